//go:build linux

package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// program describes one eBPF program in the object and how it attaches.
type program struct {
	name  string // metric label and C function name without "vigil_"
	fn    string // C function name
	group string // config switch (ProgramsConfig field name in YAML)
	// For tp_btf programs: the kernel's tracepoint name; for syscall
	// tracepoints: "syscalls/<event>".
	tracepoint string
	btfTP      bool
	// httpHook is the HTTP path the program belongs to (see
	// Config.HTTPHook); only one path is attached.
	httpHook string
	// uprobe programs are loaded with the others and attached later, to
	// each executable or library that needs them (tls_linux.go).
	uprobe bool
}

// programs lists every program. HTTP has two paths, of which one is
// attached: the socket-layer tracepoints, or the syscall tracepoints
// (the read programs of which run at syscall exit only: the arguments are
// read back from the task's saved registers).
var programs = []program{
	{"tcp_state", "vigil_tcp_state", "tcp", "inet_sock_set_state", true, "", false},
	{"tcp_retransmit", "vigil_tcp_retransmit", "tcp_retransmits", "tcp_retransmit_skb", true, "", false},
	{"tcp_receive_reset", "vigil_tcp_receive_reset", "tcp_resets", "tcp_receive_reset", true, "", false},
	{"tcp_send_reset", "vigil_tcp_send_reset", "tcp_resets", "tcp_send_reset", true, "", false},
	{"process_exec", "vigil_process_exec", "process", "sched_process_exec", true, "", false},
	{"process_exit", "vigil_process_exit", "process", "sched_process_exit", true, "", false},
	{"oom_victim", "vigil_oom_victim", "oom", "mark_victim", true, "", false},
	{"cgroup_mkdir", "vigil_cgroup_mkdir", "cgroups", "cgroup_mkdir", true, "", false},
	{"cgroup_rmdir", "vigil_cgroup_rmdir", "cgroups", "cgroup_rmdir", true, "", false},
	{"http_exit_read", "vigil_http_exit_read_", "http", "syscalls/sys_exit_read", false, "syscalls", false},
	{"http_exit_recvfrom", "vigil_http_exit_recvfrom", "http", "syscalls/sys_exit_recvfrom", false, "syscalls", false},
	{"http_exit_readv", "vigil_http_exit_readv", "http", "syscalls/sys_exit_readv", false, "syscalls", false},
	{"http_write", "vigil_http_write", "http", "syscalls/sys_enter_write", false, "syscalls", false},
	{"http_sendto", "vigil_http_sendto", "http", "syscalls/sys_enter_sendto", false, "syscalls", false},
	{"http_writev", "vigil_http_writev", "http", "syscalls/sys_enter_writev", false, "syscalls", false},
	{"http_sendmsg", "vigil_http_sendmsg", "http", "syscalls/sys_enter_sendmsg", false, "syscalls", false},
	{"http_sock_send", "vigil_http_sock_send", "http", "sock_send_length", true, "socket", false},
	{"http_sock_recv", "vigil_http_sock_recv", "http", "sock_recv_length", true, "socket", false},
	// TLS plaintext (bpf/tls.h): part of the http group (programs.tls
	// switches them off alone).
	{"go_tls_write", "vigil_go_tls_write", "http", "", false, "", true},
	{"go_tls_read", "vigil_go_tls_read", "http", "", false, "", true},
	{"go_tls_read_ret", "vigil_go_tls_read_ret", "http", "", false, "", true},
	{"ssl_write", "vigil_ssl_write", "http", "", false, "", true},
	{"ssl_write_ret", "vigil_ssl_write_ret", "http", "", false, "", true},
	{"ssl_read", "vigil_ssl_read", "http", "", false, "", true},
	{"ssl_read_ret", "vigil_ssl_read_ret", "http", "", false, "", true},
}

// lossNames names the kernel's per-program loss counters, indexed like
// enum vigil_prog in bpf/common.h; each is a program name.
var lossNames = []string{"tcp_state", "tcp_retransmit", "tcp_receive_reset", "tcp_send_reset",
	"process_exec", "process_exit", "oom_victim", "http_exit_read", "http_exit_recvfrom", "http_exit_readv",
	"http_write", "http_sendto", "http_writev", "http_sendmsg", "cgroup_mkdir", "cgroup_rmdir",
	"http_sock_send", "http_sock_recv", "go_tls_write", "go_tls_read_ret", "ssl_write_ret", "ssl_read_ret"}

func (c *ProgramsConfig) enabled(group string) bool {
	switch group {
	case "tcp":
		return c.TCP
	case "tcp_retransmits":
		return c.TCPRetransmits
	case "tcp_resets":
		return c.TCPResets
	case "process":
		return c.Process
	case "oom":
		return c.OOM
	case "http":
		return c.HTTP
	case "cgroups":
		return c.Cgroups
	}
	return false
}

// capabilities is what the kernel was found to offer.
type capabilities struct {
	kernelBTF  *btf.Spec
	features   map[string]error // nil error: available
	tracefsDir string
	// absent are BTF tracepoints treated as missing although the kernel
	// has them: a test's stand-in for an older kernel.
	absent map[string]bool
}

// tracefsDirs are where tracefs may be mounted.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// tracefsCandidates are the directories tried for tracefs: the usual
// places, then the same under the host's sysfs when it is mounted
// elsewhere (a container's /host/sys, where the host's tracefs mount
// appears when the host has mounted it). cilium/ebpf finds the tracepoint
// IDs in the first tracefs of /proc/self/mountinfo, which these are.
func tracefsCandidates(sysfs string) []string {
	dirs := slices.Clone(tracefsDirs)
	if sysfs != "" && filepath.Clean(sysfs) != "/sys" {
		for _, d := range tracefsDirs {
			dirs = append(dirs, filepath.Join(sysfs, strings.TrimPrefix(d, "/sys/")))
		}
	}
	return dirs
}

// discover probes the kernel. Every missing feature is logged once with
// the reason, and the programs that need it are skipped later.
func discover(cfg *Config, log *slog.Logger) *capabilities {
	return discoverIn(cfg, "/sys", log)
}

// discoverIn is discover with the host's /sys mounted at sysfs (a
// container's /host/sys), where tracefs is looked for too.
func discoverIn(cfg *Config, sysfs string, log *slog.Logger) *capabilities {
	caps := &capabilities{features: map[string]error{}}
	if m := missingBPFCaps(); m != "" {
		log.Warn("eBPF programs cannot be loaded: "+m+" missing", "missing", m)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		err = fmt.Errorf("kernel BTF unavailable (needs CONFIG_DEBUG_INFO_BTF, /sys/kernel/btf/vmlinux): %w", err)
	}
	caps.kernelBTF = spec
	caps.features["btf"] = err
	caps.features["ringbuf"] = wrapProbe("BPF ring buffer (Linux 5.8+)", features.HaveMapType(ebpf.RingBuf))
	// tp_btf is not probed with a test program here: the library's probe
	// for BPF_PROG_TYPE_TRACING uses fentry, which kernel lockdown refuses
	// while tp_btf works. The collector sets it from the real loads.
	caps.features["tracepoint"] = wrapProbe("tracepoint programs", features.HaveProgramType(ebpf.TracePoint))
	caps.features["uprobe"] = uprobeSupport()
	caps.features["uprobe_multi"] = wrapProbe("uprobe_multi links (Linux 6.6+)", features.HaveBPFLinkUprobeMulti())

	caps.tracefsDir, err = findTracefs(tracefsCandidates(sysfs), cfg.MountTracefs, log)
	caps.features["tracefs"] = err
	names := make([]string, 0, len(caps.features))
	for n := range caps.features {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := caps.features[n]; err != nil && n != "uprobe_multi" {
			// Without uprobe_multi the TLS uprobes are attached one by
			// one: the TLS discovery says which mode it uses.
			log.Warn("eBPF feature unavailable", "feature", n, "reason", err)
		}
	}
	return caps
}

func wrapProbe(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("%s not supported by this kernel", what)
	}
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%s: permission denied (%s)", what, permissionHint())
	}
	return fmt.Errorf("%s: %w", what, err)
}

// uprobeSupport checks for the uprobe PMU, which the TLS programs need
// (bpf/tls.h).
func uprobeSupport() error {
	if _, err := os.Stat("/sys/bus/event_source/devices/uprobe/type"); err != nil {
		return fmt.Errorf("uprobe PMU missing (CONFIG_UPROBE_EVENTS): %w", err)
	}
	return wrapProbe("kprobe/uprobe programs", features.HaveProgramType(ebpf.Kprobe))
}

// findTracefs returns the first of dirs holding tracefs, mounting it at
// /sys/kernel/tracing when allowed and missing.
func findTracefs(dirs []string, mount bool, log *slog.Logger) (string, error) {
	for _, d := range dirs {
		_, err := os.Stat(d + "/events")
		if err == nil {
			return d, nil
		}
		if errors.Is(err, os.ErrPermission) {
			return "", fmt.Errorf("tracefs at %s is not readable: %w", d, err)
		}
	}
	if !mount {
		return "", errors.New("tracefs is not mounted at /sys/kernel/tracing (syscall tracepoints need it; mount_tracefs is off)")
	}
	if err := unix.Mount("tracefs", tracefsDirs[0], "tracefs", 0, ""); err != nil {
		if errors.Is(err, unix.EPERM) {
			if eff, cerr := effectiveCaps(); cerr == nil && eff&(1<<capSysAdmin) == 0 {
				err = fmt.Errorf("%w (CAP_SYS_ADMIN missing)", err)
			}
		}
		return "", fmt.Errorf("tracefs is not mounted and mounting it at %s failed: %w", tracefsDirs[0], err)
	}
	log.Info("mounted tracefs for the syscall tracepoints", "path", tracefsDirs[0])
	return tracefsDirs[0], nil
}

// missing returns why program p cannot run here, or nil.
func (caps *capabilities) missing(p program) error {
	if err := caps.features["btf"]; err != nil {
		return err
	}
	if err := caps.features["ringbuf"]; err != nil {
		return err
	}
	if p.btfTP {
		var fn *btf.Typedef
		if caps.absent[p.tracepoint] {
			return fmt.Errorf("tracepoint %s not in kernel BTF (pretended)", p.tracepoint)
		}
		if err := caps.kernelBTF.TypeByName("btf_trace_"+p.tracepoint, &fn); err != nil {
			return fmt.Errorf("tracepoint %s not in kernel BTF: %w", p.tracepoint, err)
		}
		return nil
	}
	if err := caps.features["tracepoint"]; err != nil {
		return err
	}
	if err := caps.features["tracefs"]; err != nil {
		return err
	}
	if _, err := os.Stat(caps.tracefsDir + "/events/" + p.tracepoint); err != nil {
		return fmt.Errorf("tracepoint %s not found in tracefs: %w", p.tracepoint, err)
	}
	return nil
}

// objects are the loaded kernel objects: shared maps, and each program that
// loaded and attached.
type objects struct {
	maps  map[string]*ebpf.Map
	progs map[string]*ebpf.Program // by program.name
	links map[string]link.Link     // by program.name
	// uprobeMulti: the uprobe programs were loaded for uprobe_multi
	// links (attach type BPF_TRACE_UPROBE_MULTI), and can be attached
	// only so; otherwise for one perf-event uprobe link per offset.
	// Chosen before load from the uprobe_multi feature;
	// noUprobeMulti is why not.
	uprobeMulti   bool
	noUprobeMulti error
}

func (o *objects) close() {
	for _, l := range o.links {
		_ = l.Close()
	}
	for _, p := range o.progs {
		_ = p.Close()
	}
	for _, m := range o.maps {
		_ = m.Close()
	}
}

// loadOptions are what the loader takes from the configuration and the host.
type loadOptions struct {
	cfg          *Config
	cgroupMemory bool // attribute by the v1 memory hierarchy
	// cgroupHierarchy is the kernel's ID of the hierarchy workloads are
	// identified by; -1 when there is none, and the cgroup programs are
	// not loaded.
	cgroupHierarchy int32
	// hooksOnly replaces every program's body with "return 0": the same
	// hooks are attached, nothing runs in them (see AttachHooksOnly).
	hooksOnly bool
}

// load creates the shared maps, then loads and attaches each enabled
// program on its own, so that one refused program does not keep the
// others out. It returns an error only when nothing can be loaded at all.
func load(opts loadOptions, caps *capabilities, log *slog.Logger) (*objects, error) {
	if err := caps.features["btf"]; err != nil {
		return nil, err
	}
	if err := caps.features["ringbuf"]; err != nil {
		return nil, err
	}
	spec, err := loadVigil()
	if err != nil {
		return nil, fmt.Errorf("parse embedded eBPF object: %w", err)
	}
	if opts.hooksOnly {
		for _, ps := range spec.Programs {
			ps.Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
		}
	}
	cfg := opts.cfg
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count possible CPUs: %w", err)
	}
	if err := spec.Variables["events_wakeup_bytes"].Set(wakeupBytes(cfg.RingBufferBytes, cfg.WakeupFill, cpus)); err != nil {
		return nil, err
	}
	if err := spec.Variables["http_wakeup_bytes"].Set(wakeupBytes(cfg.HTTPRingBufferBytes, cfg.WakeupFill, cpus)); err != nil {
		return nil, err
	}
	if err := spec.Variables["http_head_windows"].Set(uint32(cfg.HTTPHeadWindows)); err != nil {
		return nil, err
	}
	if err := spec.Variables["dns_ports"].Set(dnsPorts(cfg.DNSPorts)); err != nil {
		return nil, err
	}
	var v1 uint8
	if opts.cgroupMemory {
		v1 = 1
	}
	if err := spec.Variables["cgroup_v1_memory"].Set(v1); err != nil {
		return nil, err
	}
	if err := spec.Variables["cgroup_hierarchy"].Set(max(opts.cgroupHierarchy, 0)); err != nil {
		return nil, err
	}
	spec.Maps["events"].MaxEntries = uint32(cfg.RingBufferBytes)
	spec.Maps["http_events"].MaxEntries = uint32(cfg.HTTPRingBufferBytes)
	spec.Maps["socks"].MaxEntries = uint32(cfg.MaxTrackedSockets)

	// .bss holds http_ring_gen (bpf/common.h), which every program that
	// writes to http_events must share: it is created once, like the
	// maps, with the flag the library gives data sections, so that each
	// program's collection takes it as a replacement.
	if ms := spec.Maps[".bss"]; ms != nil {
		ms.Flags |= unix.BPF_F_MMAPABLE
	}
	o := &objects{maps: map[string]*ebpf.Map{}, progs: map[string]*ebpf.Program{}, links: map[string]link.Link{},
		uprobeMulti: caps.features["uprobe_multi"] == nil, noUprobeMulti: caps.features["uprobe_multi"]}
	for name, ms := range spec.Maps {
		if strings.HasPrefix(name, ".") && name != ".bss" {
			continue // .rodata and friends belong to each program's collection
		}
		m, err := ebpf.NewMap(ms)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("create map %s: %w", name, wrapProbe("map creation", err))
		}
		o.maps[name] = m
	}
	for _, p := range programs {
		if !cfg.Programs.enabled(p.group) {
			log.Info("eBPF program disabled by configuration", "program", p.name, "switch", "programs."+p.group)
			continue
		}
		if p.httpHook != "" {
			continue // loadHTTP below
		}
		if p.uprobe {
			if cfg.Programs.TLS {
				o.loadUprobe(spec, p, caps, log)
			}
			continue
		}
		if p.group == "cgroups" && opts.cgroupHierarchy < 0 {
			log.Warn("eBPF program not loaded", "program", p.name, "reason", "no cgroup hierarchy to follow")
			continue
		}
		o.loadProgram(spec, p, caps, log)
	}
	if cfg.Programs.HTTP {
		o.loadHTTP(spec, cfg.HTTPHook, caps, log)
	}
	if len(o.progs) == 0 {
		o.close()
		return nil, errors.New("no eBPF program could be loaded")
	}
	return o, nil
}

// wakeupBytes is how many bytes each of cpus submits to a ring of
// ringBytes before it wakes the reader: fill of the ring, shared among the
// CPUs, so that the ring is at most that full when the reader wakes (for
// fill 1, it is never woken for being full).
func wakeupBytes(ringBytes int, fill float64, cpus int) uint64 {
	if fill >= 1 {
		return math.MaxUint64
	}
	return max(uint64(float64(ringBytes)*fill)/uint64(max(cpus, 1)), 1)
}

// loadProgram loads and attaches p, logging why when it cannot; it
// reports whether p runs.
func (o *objects) loadProgram(spec *ebpf.CollectionSpec, p program, caps *capabilities, log *slog.Logger) bool {
	if err := caps.missing(p); err != nil {
		log.Warn("eBPF program not loaded", "program", p.name, "reason", err)
		return false
	}
	prog, l, err := loadOne(spec, p, o.maps)
	if err != nil {
		log.Warn("eBPF program not loaded", "program", p.name, "reason", err)
		return false
	}
	o.progs[p.name] = prog
	o.links[p.name] = l
	return true
}

// loadUprobe loads p without attaching it: the TLS discovery attaches it
// to the executables and libraries that need it (tls_linux.go).
func (o *objects) loadUprobe(spec *ebpf.CollectionSpec, p program, caps *capabilities, log *slog.Logger) bool {
	for _, f := range []string{"btf", "ringbuf", "uprobe"} {
		if err := caps.features[f]; err != nil {
			log.Warn("eBPF program not loaded", "program", p.name, "reason", err)
			return false
		}
	}
	attach := ebpf.AttachNone // SEC("uprobe"), SEC("uretprobe")
	if o.uprobeMulti {
		attach = ebpf.AttachTraceUprobeMulti
	}
	prog, err := loadDetached(spec, p, o.maps, attach)
	if err != nil {
		log.Warn("eBPF program not loaded", "program", p.name, "reason", err)
		return false
	}
	o.progs[p.name] = prog
	return true
}

// unload detaches and closes the named program.
func (o *objects) unload(name string) {
	_ = o.links[name].Close()
	delete(o.links, name)
	_ = o.progs[name].Close()
	delete(o.progs, name)
}

// loadHTTP attaches one HTTP path: the socket-layer programs when hook is
// socket, or auto and the kernel has them all; else (or when one of them
// cannot be loaded under auto) the syscall-tracepoint programs.
func (o *objects) loadHTTP(spec *ebpf.CollectionSpec, hook string, caps *capabilities, log *slog.Logger) {
	path := func(h string) []program {
		var ps []program
		for _, p := range programs {
			if p.httpHook == h {
				ps = append(ps, p)
			}
		}
		return ps
	}
	if hook != "syscalls" {
		var loaded []program
		for _, p := range path("socket") {
			if o.loadProgram(spec, p, caps, log) {
				loaded = append(loaded, p)
			}
		}
		if len(loaded) == len(path("socket")) {
			log.Info("HTTP seen at the socket layer; the syscall tracepoint programs are not needed", "http_hook", hook)
			return
		}
		if hook == "socket" {
			log.Warn("HTTP socket-layer path incomplete (http_hook: socket): some HTTP traffic is not seen", "loaded", len(loaded))
			return
		}
		// Both paths at once would see each transfer twice.
		for _, p := range loaded {
			o.unload(p.name)
		}
		log.Info("HTTP socket-layer tracepoints unavailable, using the syscall tracepoints", "http_hook", hook)
	}
	for _, p := range path("syscalls") {
		o.loadProgram(spec, p, caps, log)
	}
}

// loadOne loads program p from a copy of spec that holds only p, reusing
// the shared maps, and attaches it.
func loadOne(spec *ebpf.CollectionSpec, p program, maps map[string]*ebpf.Map) (*ebpf.Program, link.Link, error) {
	prog, err := loadDetached(spec, p, maps, ebpf.AttachNone)
	if err != nil {
		return nil, nil, err
	}
	var l link.Link
	if p.btfTP {
		l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	} else {
		group, event, _ := strings.Cut(p.tracepoint, "/")
		l, err = link.Tracepoint(group, event, prog, nil)
	}
	if err != nil {
		prog.Close()
		return nil, nil, wrapProbe("attach to "+p.tracepoint, err)
	}
	return prog, l, nil
}

// loadDetached loads program p from a copy of spec that holds only p,
// reusing the shared maps; attach, unless AttachNone, replaces the
// object's expected attach type.
func loadDetached(spec *ebpf.CollectionSpec, p program, maps map[string]*ebpf.Map, attach ebpf.AttachType) (*ebpf.Program, error) {
	s := spec.Copy()
	for n := range s.Programs {
		if n != p.fn {
			delete(s.Programs, n)
		}
	}
	if s.Programs[p.fn] == nil {
		return nil, fmt.Errorf("program %s missing from the object", p.fn)
	}
	if attach != ebpf.AttachNone {
		s.Programs[p.fn].AttachType = attach
	}
	coll, err := ebpf.NewCollectionWithOptions(s, ebpf.CollectionOptions{MapReplacements: maps})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("verifier rejected it: %v", ve)
		}
		return nil, wrapProbe("load", err)
	}
	prog := coll.DetachProgram(p.fn)
	coll.Close()
	return prog, nil
}

// AttachHooksOnly attaches, at every hook the collector attaches to with
// cfg, a program that returns at once, and returns what detaches them. The
// overhead bench times the workloads with these to tell the kernel's own
// cost of running any program at those hooks (tracepoint dispatch) from
// the cost of Vigil's programs.
func AttachHooksOnly(cfg *Config) (detach func(), err error) {
	log := slog.New(slog.DiscardHandler)
	opts := loadOptions{cfg: cfg, cgroupHierarchy: -1, hooksOnly: true}
	if _, memory, err := cgroupMount("/proc", cfg.CgroupHierarchy); err == nil {
		opts.cgroupMemory = memory
		if id, err := cgroupHierarchyID("/proc", memory); err == nil {
			opts.cgroupHierarchy = id
		}
	}
	o, err := load(opts, discover(cfg, log), log)
	if err != nil {
		return nil, err
	}
	// The TLS uprobes too, at the same places as the collector's.
	if t := newTLSManagerFor(o, "/proc", "/", cfg.MaxTLSTargets, log); t != nil {
		t.start()
		return func() { t.close(); o.close() }, nil
	}
	return o.close, nil
}

// dnsPorts is the kernel's dns_ports array: the configured ports, the
// unused entries 53 (so that a port 0, an unconnected socket's remote
// port, never matches).
func dnsPorts(ports []int) [maxDNSPorts]uint16 {
	a := [maxDNSPorts]uint16{53, 53, 53, 53}
	for i, p := range ports[:min(len(ports), maxDNSPorts)] {
		a[i] = uint16(p)
	}
	return a
}
