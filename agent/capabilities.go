package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/internal/capability"
)

// keepAll is the global.keep_capabilities entry that turns the drop off.
const keepAll = "all"

// runtimeCapabilities is what the agent still uses once it has started
// (docs/security.md, "Capabilities at run time"); global.keep_capabilities
// replaces it:
//
//   - bpf, perfmon: a reload that changes the eBPF collector's section
//     loads its programs again;
//   - dac_read_search: the logs collector opens log files of other owners
//     as they appear or rotate, and the eBPF collector opens cgroups by
//     handle (open_by_handle_at). Only a systemd unit grants it; the
//     DaemonSet does not, and nothing is kept that was not held;
//   - sys_admin, on kernels without CAP_BPF (before 5.8) only, where it is
//     what loads eBPF programs;
//   - what started components said they use at run time
//     (capability.UseAtRunTime): sys_admin and sys_ptrace for the eBPF
//     collector's TLS discovery, which attaches uprobes (the kernel's
//     uprobe PMU wants CAP_SYS_ADMIN; uprobe_multi links, used on Linux
//     6.6+, do not, but it is kept alike) to processes as they start and
//     reads their executables. Kept only if held: the DaemonSet grants neither
//     unless asked to (docs/kube.md, "Capabilities").
//
// Everything else is dropped: sys_resource raised RLIMIT_MEMLOCK at start
// (kernels before 5.11) and the raised limit stays; the listener is bound;
// the systemd actuators talk to systemd's private socket, which uid 0 opens
// as its owner; the exec actuator's commands and the signals it sends to
// their process group run as the agent's own uid.
func runtimeCapabilities() capability.Set {
	keep := capability.Of(capability.BPF, capability.Perfmon, capability.DACReadSearch) | capability.RunTimeUse()
	if !capability.KernelKnows(capability.BPF) {
		keep |= capability.Of(capability.SysAdmin)
	}
	return keep
}

// validateKeepCapabilities checks global.keep_capabilities.
func validateKeepCapabilities(names []string) error {
	var errs []error
	for _, n := range names {
		if n == keepAll {
			if len(names) > 1 {
				errs = append(errs, fmt.Errorf("%q cannot be listed with other capabilities", keepAll))
			}
			continue
		}
		if _, err := capability.Parse(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// keepCapabilities returns the set global.keep_capabilities names (the
// run-time default when it is empty), and false for "all".
func keepCapabilities(names []string) (capability.Set, bool) {
	if len(names) == 0 {
		return runtimeCapabilities(), true
	}
	if slices.Contains(names, keepAll) {
		return 0, false
	}
	var keep capability.Set
	for _, n := range names {
		if c, err := capability.Parse(n); err == nil {
			keep |= capability.Of(c)
		}
	}
	return keep, true
}

// dropCapabilities reduces the process's capability sets once the
// collectors and components have started (eBPF programs loaded, listener
// bound) to what it uses at run time, clears the inheritable and ambient
// sets, reduces the bounding set when it holds CAP_SETPCAP, and sets
// no_new_privs. A failure is logged: the agent runs on with what it holds.
func (a *Agent) dropCapabilities(cfg *Config) {
	keep, drop := keepCapabilities(cfg.Global.KeepCapabilities)
	before, err := capability.Current()
	if err != nil {
		a.logger.Warn("cannot read the capability sets", "err", err)
		return
	}
	if !drop {
		a.logger.Info("capabilities kept (global.keep_capabilities: [all])", "effective", before.Effective.String(),
			"bounding", before.Bounding.String())
		return
	}
	after, err := capability.Reduce(keep)
	if err != nil {
		a.logger.Warn("capabilities not dropped; the agent keeps what it was started with", "err", err,
			"effective", before.Effective.String())
		return
	}
	a.logger.Info("dropped capabilities the agent does not use at run time",
		"dropped", (before.Permitted &^ after.Permitted).String(),
		"kept", after.Permitted.String(),
		"bounding", after.Bounding.String(),
		"bounding_dropped", (before.Bounding &^ after.Bounding).String(),
		"no_new_privs", after.NoNewPrivs)
}

// capabilityCollector serves vigil_capabilities and vigil_no_new_privs,
// read from the process at each scrape.
type capabilityCollector struct {
	caps, nnp *prometheus.Desc
}

func newCapabilityCollector() *capabilityCollector {
	return &capabilityCollector{
		caps: prometheus.NewDesc("vigil_capabilities",
			"Capabilities the agent holds (1), by set (effective, permitted, inheritable, ambient, bounding); a capability not held has no series.",
			[]string{"set", "capability"}, nil),
		nnp: prometheus.NewDesc("vigil_no_new_privs",
			"Whether no_new_privs is set: programs the agent runs cannot gain privileges (setuid, file capabilities).", nil, nil),
	}
}

func (c *capabilityCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.caps; ch <- c.nnp }

func (c *capabilityCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := capability.Current()
	if err != nil {
		return
	}
	for set, s := range st.Sets() {
		for _, cp := range s.Caps() {
			ch <- prometheus.MustNewConstMetric(c.caps, prometheus.GaugeValue, 1, set, strings.ToLower(cp.String()))
		}
	}
	nnp := 0.0
	if st.NoNewPrivs {
		nnp = 1
	}
	ch <- prometheus.MustNewConstMetric(c.nnp, prometheus.GaugeValue, nnp)
}
