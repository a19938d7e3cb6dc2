//go:build linux

package host

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-agent/vigil/agent/agenttest"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// The differential test runs the Debian prometheus-node-exporter (1.5.0 on
// Debian 12) beside an in-process Vigil agent that has only the host
// collector, scrapes node_exporter, Vigil, node_exporter again, and for
// every node_* metric both expose checks HELP, TYPE, the label sets and the
// values: exact for what does not move, within the two node_exporter
// readings (plus a small slack for gauges that move) for the rest.
//
// Where Debian's 1.5.0 differs from current node_exporter (1.9), Vigil
// follows the current one, which the current node-mixin is written against:
//   - node_filesystem_* carry device_error="" (1.7+). Prometheus drops empty
//     labels at ingestion, so empty labels are dropped here before label
//     sets are compared, exactly as a Prometheus server would store them.
//   - node_filesystem_mount_info exists only in 1.7+ (not compared).
//   - Debian patches the defaults of mount-points-exclude (adds run, mnt,
//     media) and netdev device-exclude (^lo$); node_exporter is started
//     with Vigil's defaults (upstream's) so both look at the same mounts,
//     disks and interfaces.

// nodeExporterCollectors are the node_exporter collectors that cover what
// the host collector reports.
var nodeExporterCollectors = []string{
	"cpu", "meminfo", "loadavg", "stat", "vmstat", "filesystem", "diskstats", "netdev",
	"uname", "time", "timex", "filefd", "conntrack",
}

// requiredMetrics must be exposed by both and agree: what the node-mixin
// alerts and a USE-method node dashboard read, plus the list.
var requiredMetrics = []string{
	"node_cpu_seconds_total",
	"node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes", "node_memory_MemFree_bytes",
	"node_memory_Buffers_bytes", "node_memory_Cached_bytes", "node_memory_Slab_bytes",
	"node_memory_SwapTotal_bytes", "node_memory_SwapFree_bytes",
	"node_load1", "node_load5", "node_load15",
	"node_filesystem_size_bytes", "node_filesystem_avail_bytes", "node_filesystem_free_bytes",
	"node_filesystem_files", "node_filesystem_files_free", "node_filesystem_readonly",
	"node_disk_read_bytes_total", "node_disk_written_bytes_total", "node_disk_io_time_seconds_total",
	"node_disk_io_time_weighted_seconds_total", "node_disk_reads_completed_total", "node_disk_writes_completed_total",
	"node_network_receive_bytes_total", "node_network_transmit_bytes_total",
	"node_network_receive_packets_total", "node_network_transmit_packets_total",
	"node_network_receive_errs_total", "node_network_transmit_errs_total",
	"node_network_receive_drop_total", "node_network_transmit_drop_total",
	"node_boot_time_seconds", "node_uname_info", "node_procs_running", "node_procs_blocked",
	"node_context_switches_total", "node_intr_total", "node_forks_total", "node_time_seconds",
	"node_vmstat_pgmajfault", "node_vmstat_oom_kill",
	"node_filefd_allocated", "node_filefd_maximum",
	"node_timex_offset_seconds", "node_timex_sync_status", "node_timex_maxerror_seconds",
}

// exactMetrics do not move between two scrapes a few milliseconds apart:
// Vigil's value must equal one of node_exporter's two readings.
var exactMetrics = map[string]bool{
	"node_memory_MemTotal_bytes": true, "node_memory_SwapTotal_bytes": true,
	"node_memory_Hugepagesize_bytes": true, "node_memory_HugePages_Total": true,
	"node_memory_VmallocTotal_bytes": true, "node_memory_CommitLimit_bytes": true,
	"node_filesystem_size_bytes": true, "node_filesystem_files": true,
	"node_filesystem_readonly": true, "node_filesystem_device_error": true,
	"node_boot_time_seconds": true, "node_uname_info": true,
	"node_filefd_maximum": true, "node_nf_conntrack_entries_limit": true,
	"node_time_zone_offset_seconds": true, "node_timex_status": true,
	"node_timex_sync_status": true, "node_timex_loop_time_constant": true,
	"node_timex_tick_seconds": true,
}

// slack is how far a moving value may lie outside the two node_exporter
// readings. Counters get none (they only grow, so Vigil's reading, taken
// between the two, lies between them), except per-CPU idle/iowait which the
// kernel may step back; gauges get room for this busy, shared machine.
func slack(name string, ne float64) float64 {
	switch {
	case strings.HasPrefix(name, "node_cpu_"):
		return 1
	case strings.HasPrefix(name, "node_memory_"):
		// Other builds on this shared machine (and the race detector in
		// this very process) move free and committed memory by tens of MiB
		// between scrapes; a wrong field or unit is off by far more.
		return math.Max(256<<20, 0.05*ne)
	case name == "node_filesystem_avail_bytes" || name == "node_filesystem_free_bytes":
		return 512 << 20
	case name == "node_filesystem_files_free":
		return 100000
	case strings.HasPrefix(name, "node_load"):
		return 0.05
	case strings.HasPrefix(name, "node_procs_"):
		return 32
	case name == "node_filefd_allocated":
		return 2000
	case name == "node_nf_conntrack_entries":
		return 200
	case name == "node_disk_io_now":
		return 64
	case name == "node_time_seconds", strings.HasPrefix(name, "node_timex_"):
		return 1
	}
	return 0
}

func TestMatchesNodeExporter(t *testing.T) {
	bin := nodeExporterBinary(t)
	neURL := startNodeExporter(t, bin)
	vigilURL := startVigil(t)

	ne1 := scrape(t, neURL)
	vg := scrape(t, vigilURL)
	ne2 := scrape(t, neURL)

	var problems []string
	var onlyNE, onlyVigil []string
	for name := range ne1 {
		if _, ok := vg[name]; !ok {
			onlyNE = append(onlyNE, name)
		}
	}
	for name := range vg {
		if _, ok := ne1[name]; !ok && strings.HasPrefix(name, "node_") {
			onlyVigil = append(onlyVigil, name)
		}
	}
	sort.Strings(onlyNE)
	sort.Strings(onlyVigil)
	t.Logf("only node_exporter exposes (not read by the host collector): %s", strings.Join(onlyNE, " "))
	t.Logf("only Vigil exposes (node_exporter 1.7+ names): %s", strings.Join(onlyVigil, " "))
	for _, name := range onlyVigil {
		if name != "node_filesystem_mount_info" {
			problems = append(problems, fmt.Sprintf("%s: exposed by Vigil but not by node_exporter", name))
		}
	}
	for _, name := range requiredMetrics {
		if vg[name] == nil || ne1[name] == nil {
			problems = append(problems, fmt.Sprintf("%s: required, present in Vigil=%t node_exporter=%t", name, vg[name] != nil, ne1[name] != nil))
		}
	}

	compared := 0
	for name, vf := range vg {
		nf1, nf2 := ne1[name], ne2[name]
		if nf1 == nil || nf2 == nil || !strings.HasPrefix(name, "node_") {
			continue
		}
		compared++
		if vf.GetHelp() != nf1.GetHelp() {
			problems = append(problems, fmt.Sprintf("%s: HELP %q, node_exporter %q", name, vf.GetHelp(), nf1.GetHelp()))
		}
		if vf.GetType() != nf1.GetType() {
			problems = append(problems, fmt.Sprintf("%s: TYPE %s, node_exporter %s", name, vf.GetType(), nf1.GetType()))
		}
		vs, s1, s2 := series(vf), series(nf1), series(nf2)
		if !sameKeys(vs, s1) && !sameKeys(vs, s2) {
			for _, k := range keysNotIn(vs, s1) {
				problems = append(problems, fmt.Sprintf("%s%s: only in Vigil", name, k))
			}
			for _, k := range keysNotIn(s1, vs) {
				problems = append(problems, fmt.Sprintf("%s%s: only in node_exporter", name, k))
			}
			continue
		}
		for k, v := range vs {
			a, b := s1[k], s2[k]
			if exactMetrics[name] {
				if v != a && v != b {
					problems = append(problems, fmt.Sprintf("%s%s = %v, node_exporter %v then %v (must be equal)", name, k, v, a, b))
				}
				continue
			}
			lo, hi := math.Min(a, b), math.Max(a, b)
			d := slack(name, hi)
			if v < lo-d || v > hi+d {
				problems = append(problems, fmt.Sprintf("%s%s = %v, node_exporter %v then %v (allowed %v..%v)", name, k, v, a, b, lo-d, hi+d))
			}
		}
	}
	t.Logf("compared %d metric names present in both", compared)
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Errorf("Vigil's host metrics differ from node_exporter's (%d problems):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
}

// nodeExporterBinary finds the Debian node_exporter. Under CI=true its
// absence is a failure: the package is in hack/apt/base.txt.
func nodeExporterBinary(t *testing.T) string {
	t.Helper()
	return testenv.Binary(t, "prometheus-node-exporter")
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startNodeExporter(t *testing.T, bin string) string {
	t.Helper()
	addr := freePort(t)
	args := []string{
		"--web.listen-address=" + addr,
		"--web.disable-exporter-metrics",
		"--collector.disable-defaults",
		"--collector.filesystem.mount-points-exclude=" + DefaultMountPointsExclude,
		"--collector.filesystem.fs-types-exclude=" + DefaultFSTypesExclude,
		"--collector.diskstats.device-exclude=" + DefaultDiskDeviceExclude,
		"--collector.netdev.device-exclude=",
		"--collector.vmstat.fields=" + DefaultVMStatFields,
	}
	for _, c := range nodeExporterCollectors {
		args = append(args, "--collector."+c)
	}
	cmd := exec.Command(bin, args...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	url := "http://" + addr + "/metrics"
	waitFor(t, url, exited, func() string { return logs.String() })
	return url
}

func startVigil(t *testing.T) string {
	t.Helper()
	return agenttest.Start(t, "server:\n  listen_address: 127.0.0.1:0\ncollectors:\n  host: {}\n")
}

// waitFor polls url until it answers 200, the process exits, or a generous
// deadline passes.
func waitFor(t *testing.T, url string, exited <-chan error, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("%s: server exited before it was ready: %v\n%s", url, err, logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready: %v\n%s", url, err, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// series maps each series' label set (empty labels dropped, as Prometheus
// stores them) to its value.
func series(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		var parts []string
		for _, l := range m.GetLabel() {
			if l.GetValue() != "" {
				parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
		}
		sort.Strings(parts)
		var v float64
		switch {
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Untyped != nil:
			v = m.Untyped.GetValue()
		}
		out["{"+strings.Join(parts, ",")+"}"] = v
	}
	return out
}

func sameKeys(a, b map[string]float64) bool {
	return len(keysNotIn(a, b)) == 0 && len(keysNotIn(b, a)) == 0
}

func keysNotIn(a, b map[string]float64) []string {
	var out []string
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
