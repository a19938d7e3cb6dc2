//go:build linux

package cgroup

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vigil-agent/vigil/internal/metricreg"
)

// namesAdapter runs the collector as the agent's collector set does for
// the ingest: through UpdateNames.
type namesAdapter struct{ adapter }

func (a namesAdapter) CollectNames(keep func(string) bool, ch chan<- prometheus.Metric) {
	if err := a.c.UpdateNames(context.Background(), keep, ch); err != nil {
		a.t.Errorf("UpdateNames: %v", err)
	}
}

// defaultRuleNames are the vigil_cgroup_ families the default rules read
// (rules/defaults), plus the cgroup count.
var defaultRuleNames = []string{
	"vigil_cgroup_cpu_periods_total", "vigil_cgroup_cpu_throttled_periods_total",
	"vigil_cgroup_memory_limit_bytes", "vigil_cgroup_memory_limit_hits_total",
	"vigil_cgroup_memory_pressure_waiting_seconds_total", "vigil_cgroup_memory_working_set_bytes",
	"vigil_cgroup_oom_kills_total", "vigil_cgroup_process_max_fds", "vigil_cgroup_process_open_fds",
	"vigil_cgroup_cgroups",
}

func keepOf(names []string) func(string) bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return func(n string) bool { return m[n] }
}

// flatten renders families as sorted "name{labels} value" lines, keeping
// only the series whose cgroup label starts with prefix (all with "").
func flatten(mfs []*dto.MetricFamily, prefix string) []string {
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var lbl []string
			cg := ""
			for _, lp := range m.GetLabel() {
				lbl = append(lbl, lp.GetName()+"="+lp.GetValue())
				if lp.GetName() == "cgroup" {
					cg = lp.GetValue()
				}
			}
			if prefix != "" && !strings.HasPrefix(cg, prefix) {
				continue
			}
			sort.Strings(lbl)
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			if prefix != "" && strings.HasSuffix(mf.GetName(), "periods_total") {
				// On the real hierarchy the kernel counts CFS periods of
				// an empty cgroup too (seen 0 then 1 between the two
				// reads): the series must match, not its count. The
				// fabricated tree (prefix "") compares every value.
				out = append(out, fmt.Sprintf("%s{%s}", mf.GetName(), strings.Join(lbl, ",")))
				continue
			}
			out = append(out, fmt.Sprintf("%s{%s} %v", mf.GetName(), strings.Join(lbl, ","), v))
		}
	}
	sort.Strings(out)
	return out
}

// compareNames gathers c in full and through GatherNames with each keep
// set, and checks that GatherNames returns exactly the full gather's
// series of the kept families (those of cgroups under prefix).
func compareNames(t *testing.T, c *Collector, prefix string) {
	t.Helper()
	full := metricreg.New()
	full.MustRegister(adapter{t, c})
	sel := metricreg.New()
	sel.MustRegister(namesAdapter{adapter{t, c}})
	sets := [][]string{defaultRuleNames, {"vigil_cgroup_cgroups"}, {"vigil_cgroup_memory_working_set_bytes"}, {"vigil_cgroup_process_open_fds"}}
	for _, f := range familyFields {
		sets = append(sets, []string{f.name})
	}
	for _, names := range sets {
		keep := keepOf(names)
		all, err := full.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var kept []*dto.MetricFamily
		for _, mf := range all {
			if keep(mf.GetName()) {
				kept = append(kept, mf)
			}
		}
		got, _, err := sel.GatherNames(keep)
		if err != nil {
			t.Fatal(err)
		}
		want, have := flatten(kept, prefix), flatten(got, prefix)
		// Pressure and descriptors may be absent (no PSI, no process);
		// the count has no cgroup label to match prefix.
		optional := strings.Contains(names[0], "pressure") || strings.Contains(names[0], "process_") || (prefix != "" && names[0] == "vigil_cgroup_cgroups")
		if len(want) == 0 && !optional {
			t.Errorf("%v: full gather has no series: the comparison proves nothing", names)
		}
		if strings.Join(want, "\n") != strings.Join(have, "\n") {
			t.Errorf("%v: GatherNames differs from Gather\nGather:\n%s\nGatherNames:\n%s", names, strings.Join(want, "\n"), strings.Join(have, "\n"))
		}
	}
}

// TestUpdateNamesMatchesUpdate: on the fabricated v2 tree (regular files,
// so values do not move between reads), the ingest's collection of any
// family is exactly the full collection's.
func TestUpdateNamesMatchesUpdate(t *testing.T) {
	root := t.TempDir()
	writeV2Tree(t, root, 5, 2, 3)
	c := newStarted(t, NewConfig(), root, nil, nil)
	compareNames(t, c, "")
}

// TestRealUpdateNamesMatchesUpdate: the same on this machine's real
// hierarchy (needs root), for cgroups of the test's own that hold no
// process, so their values stay still between the two reads.
func TestRealUpdateNamesMatchesUpdate(t *testing.T) {
	r := newRealCgroups(t)
	parent := "/vigil-test-" + randHex(8)
	for p := range 3 {
		pod := fmt.Sprintf("%s/kubepods/burstable/pod%08x-0000-0000-0000-%012x", parent, p, p)
		for k := range 2 {
			ctr := pod + "/" + fmt.Sprintf("%064x", p*10+k)
			r.mkdir(ctr)
			r.limit(ctr, 64<<20)
		}
	}
	c := newStarted(t, NewConfig(), "/sys", nil, nil)
	compareNames(t, c, parent)
}
