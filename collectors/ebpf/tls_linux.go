//go:build linux

package ebpf

import (
	"bufio"
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/internal/capability"
)

// TLS discovery: which executables and libraries get the TLS uprobes
// (bpf/tls.h). Processes are looked at when the collector starts and when
// they exec (the process programs' exec events; a rescan of /proc every
// tlsRescanEvery finds those whose event was missed); each one's
// executable and the TLS libraries it maps are inspected once per file
// (device and inode), and attached once per file whatever the number of
// processes (an uprobe is set on the file, for every process that maps
// it). A file is detached when the last process known to use it is gone.
// At most max_tls_targets files are attached; the processes of further
// ones are counted not covered, as are the processes whose TLS cannot be
// followed (vigil_ebpf_tls_uncovered_processes{reason}).

// fileKey names a file by device and inode.
type fileKey struct{ dev, ino uint64 }

// tlsAttached is a file with the uprobes attached.
type tlsAttached struct {
	library string
	path    string
	links   []link.Link
	pids    map[uint32]struct{}
	// pinned files (the host's own libssl) stay attached without a
	// process: a short-lived client (curl) execs, maps it and is done
	// before discovery could look at it.
	pinned bool
}

// tlsProcess is what a process was found to use.
type tlsProcess struct {
	files     []fileKey // attached files it maps
	uncovered string    // why its TLS is not seen, if so
}

// Bounds of the discovery.
const (
	tlsQueueLen        = 1024                  // exec events waiting to be looked at
	tlsMaxInspected    = 4096                  // files whose verdict is cached
	tlsMaxProcesses    = 65536                 // processes followed
	tlsRescanEvery     = 30 * time.Second      // full /proc rescan for missed execs
	tlsExecDelay       = 50 * time.Millisecond // the dynamic loader maps the libraries first
	tlsExecSecondLook  = time.Second           // and a second look for late mappers
	tlsMaxMapsFileSize = 4 << 20
)

// sslLibDirs are where the host's libssl is looked for at start (pinned).
var sslLibGlobs = []string{"/usr/lib/*/libssl.so.*", "/lib/*/libssl.so.*", "/usr/lib64/libssl.so.*", "/usr/lib/libssl.so.*"}

type tlsManager struct {
	procFS string
	root   string // the host's root (collectors.Paths.RootFS)
	max    int
	progs  map[string]*ebpf.Program
	// multi: the programs were loaded for uprobe_multi links, one per
	// program and kind a file (attachMulti); else one uprobe link per
	// offset (attachEach).
	multi bool
	log   *slog.Logger
	self  int

	mu sync.Mutex
	// refused is set when the kernel refused an uprobe for want of a
	// privilege: nothing more is attached (every later try would be
	// refused the same way) and processes using TLS count as
	// no_privilege.
	refused   bool
	attached  map[fileKey]*tlsAttached
	inspected map[fileKey]tlsBinary
	procs     map[uint32]*tlsProcess
	execs     chan uint32
	dropped   uint64 // exec events not queued (queue full)

	stop chan struct{}
	done chan struct{}
}

func newTLSManager(procFS, rootFS string, max int, progs map[string]*ebpf.Program, multi bool, log *slog.Logger) *tlsManager {
	if rootFS == "" {
		rootFS = "/"
	}
	return &tlsManager{procFS: procFS, root: rootFS, max: max, progs: progs, multi: multi, log: log, self: os.Getpid(),
		attached: map[fileKey]*tlsAttached{}, inspected: map[fileKey]tlsBinary{}, procs: map[uint32]*tlsProcess{},
		execs: make(chan uint32, tlsQueueLen), stop: make(chan struct{}), done: make(chan struct{})}
}

// start pins the host's libssl, then (in the background) scans the
// running processes and follows exec events until close.
func (t *tlsManager) start() {
	capability.UseAtRunTime(capability.Of(capability.SysAdmin, capability.SysPtrace))
	t.pinHostLibs()
	go t.run()
}

// exec queues a process that just exec'd; it never blocks the reader.
func (t *tlsManager) exec(pid uint32) {
	select {
	case t.execs <- pid:
	default:
		t.mu.Lock()
		t.dropped++
		t.mu.Unlock()
	}
}

// exited forgets a process at once (its exit event).
func (t *tlsManager) exited(pid uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forget(pid)
}

func (t *tlsManager) run() {
	defer close(t.done)
	// The first scan inspects every executable running (seconds on a
	// busy node): off the collector's start, and beside the exec events,
	// so that a process started now is not kept waiting behind it.
	first := make(chan struct{})
	go func() {
		defer close(first)
		t.scanAll(t.stop)
	}()
	defer func() { <-first }()
	type due struct {
		pid  uint32
		at   time.Time
		last bool
	}
	var waiting []due
	// The exec-delay ticker runs only while processes wait for their
	// look: on a node where nothing execs it would wake the agent 20
	// times a second for nothing.
	tick := time.NewTicker(tlsExecDelay)
	tick.Stop()
	ticking := false
	defer tick.Stop()
	rescan := time.NewTicker(tlsRescanEvery)
	defer rescan.Stop()
	for {
		select {
		case <-t.stop:
			return
		case pid := <-t.execs:
			if len(waiting) < tlsQueueLen*2 {
				waiting = append(waiting, due{pid, time.Now().Add(tlsExecDelay), false})
			}
			if !ticking {
				tick.Reset(tlsExecDelay)
				ticking = true
			}
		case now := <-tick.C:
			kept := waiting[:0]
			for _, d := range waiting {
				if now.Before(d.at) {
					kept = append(kept, d)
					continue
				}
				t.scan(d.pid)
				if !d.last {
					kept = append(kept, due{d.pid, now.Add(tlsExecSecondLook), true})
				}
			}
			waiting = kept
			if len(waiting) == 0 {
				tick.Stop()
				ticking = false
			}
		case <-rescan.C:
			t.rescan()
		}
	}
}

// close detaches everything.
func (t *tlsManager) close() {
	close(t.stop)
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	var links []link.Link
	for k, a := range t.attached {
		links = append(links, a.links...)
		delete(t.attached, k)
	}
	closeLinks(links)
}

// closeLinks detaches uprobe links, several at a time: the kernel waits
// for a grace period in each link's unregistration (about 0.2 s each on
// this VM), and waits of concurrent closes overlap. With one perf-event
// link per probe (kernels without uprobe_multi), 41 Go TLS binaries (370
// uprobes) took 76-81 s to detach at shutdown one at a time, 45 s 32 at a
// time; measured again on 2026-12-04 with hack/bench/tlsstop.sh (40 Go
// copies plus the host's, about 380 uprobes, 32 at a time): 38-39 s, 77 s
// under load. With uprobe_multi links (3 a Go binary, 4 a libssl; one
// synchronisation each for all its offsets) the same took 0.3 s, four
// runs alternated with those. Per Go file (BenchmarkTLSAttachDetach):
// 0.06 s with 3 uprobe_multi links, 0.75-0.78 s with 9 perf-event links
// (docs/ebpf.md, Troubleshooting).
func closeLinks(links []link.Link) {
	const workers = 32
	next := make(chan link.Link)
	var wg sync.WaitGroup
	for range min(workers, len(links)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range next {
				_ = l.Close()
			}
		}()
	}
	for _, l := range links {
		next <- l
	}
	close(next)
	wg.Wait()
}

// pinHostLibs attaches the host's libssl files.
func (t *tlsManager) pinHostLibs() {
	seen := map[fileKey]bool{}
	for _, g := range sslLibGlobs {
		paths, _ := filepath.Glob(filepath.Join(t.root, g))
		for _, p := range paths {
			if !sslLibName(filepath.Base(p)) {
				continue
			}
			k, err := statKey(p)
			if err != nil || seen[k] {
				continue
			}
			seen[k] = true
			t.mu.Lock()
			if a := t.attach(k, p); a != nil {
				a.pinned = true
			}
			t.mu.Unlock()
		}
	}
}

// sslLibName tells libssl.so.3, libssl.so.1.1 and the like.
func sslLibName(base string) bool {
	return strings.HasPrefix(base, "libssl.so.") && !strings.HasSuffix(base, ".hmac")
}

// scanAll looks at every process not known yet, until stop closes; it
// forgets none (a process exec'd meanwhile is not in its listing).
func (t *tlsManager) scanAll(stop <-chan struct{}) {
	ents, err := os.ReadDir(t.procFS)
	if err != nil {
		return
	}
	for _, e := range ents {
		n, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		select {
		case <-stop:
			return
		default:
		}
		pid := uint32(n)
		t.mu.Lock()
		_, known := t.procs[pid]
		t.mu.Unlock()
		if !known {
			t.scan(pid)
		}
	}
}

// rescan looks at processes not known yet and forgets those gone.
func (t *tlsManager) rescan() {
	ents, err := os.ReadDir(t.procFS)
	if err != nil {
		return
	}
	live := map[uint32]bool{}
	for _, e := range ents {
		n, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		pid := uint32(n)
		live[pid] = true
		t.mu.Lock()
		_, known := t.procs[pid]
		t.mu.Unlock()
		if !known {
			t.scan(pid)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid := range t.procs {
		if !live[pid] {
			t.forget(pid)
		}
	}
}

// scan looks at one process: its executable and the TLS libraries it
// maps.
func (t *tlsManager) scan(pid uint32) {
	if int(pid) == t.self {
		return
	}
	dir := filepath.Join(t.procFS, strconv.FormatUint(uint64(pid), 10))
	type file struct {
		key  fileKey
		path string
	}
	var files []file
	exe := filepath.Join(dir, "exe")
	if k, err := statKey(exe); err == nil {
		files = append(files, file{k, exe})
	} else {
		// A kernel thread, or a process already gone; or one of another
		// user, whose executable the agent may not read without
		// CAP_SYS_PTRACE: counted, whether it uses TLS is not known.
		reason := ""
		if errors.Is(err, os.ErrPermission) {
			reason = uncoveredNoAccess
		}
		t.mu.Lock()
		if p, ok := t.procs[pid]; ok {
			p.uncovered = reason
		} else if len(t.procs) < tlsMaxProcesses {
			t.procs[pid] = &tlsProcess{uncovered: reason}
		}
		t.mu.Unlock()
		return
	}
	uncovered := ""
	for _, lib := range mappedTLSLibs(filepath.Join(dir, "maps")) {
		switch {
		case sslLibName(filepath.Base(lib)):
			p := filepath.Join(dir, "root", lib)
			if k, err := statKey(p); err == nil {
				files = append(files, file{k, p})
			}
		case strings.HasPrefix(filepath.Base(lib), "libgnutls.so"):
			uncovered = uncoveredGnuTLS
		case strings.HasPrefix(filepath.Base(lib), "libssl3.so"), strings.HasPrefix(filepath.Base(lib), "libnss3.so"):
			uncovered = uncoveredNSS
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.procs[pid]
	if p == nil {
		if len(t.procs) >= tlsMaxProcesses {
			return
		}
		p = &tlsProcess{}
		t.procs[pid] = p
	}
	covered := false
	for _, f := range files {
		b := t.verdict(f.key, f.path)
		if b.library == "" {
			continue
		}
		if b.reason != "" {
			uncovered = b.reason
			continue
		}
		a := t.attached[f.key]
		if a == nil {
			if t.refused {
				uncovered = uncoveredPrivilege
				continue
			}
			if len(t.attached) >= t.max {
				uncovered = uncoveredLimit
				continue
			}
			if a = t.attach(f.key, f.path); a == nil {
				uncovered = uncoveredAttach
				if t.refused {
					uncovered = uncoveredPrivilege
				}
				continue
			}
		}
		covered = true
		if _, ok := a.pids[pid]; !ok {
			a.pids[pid] = struct{}{}
			p.files = append(p.files, f.key)
		}
	}
	if covered && uncovered != uncoveredGnuTLS && uncovered != uncoveredNSS {
		uncovered = "" // e.g. a Go executable that also maps libssl
	}
	p.uncovered = uncovered
}

// verdict inspects a file once; t.mu held.
func (t *tlsManager) verdict(k fileKey, path string) tlsBinary {
	if b, ok := t.inspected[k]; ok {
		return b
	}
	b, err := inspectTLSBinary(path)
	if err != nil {
		b = tlsBinary{}
	}
	if len(t.inspected) >= tlsMaxInspected {
		clear(t.inspected)
	}
	t.inspected[k] = b
	if b.library != "" {
		if b.reason != "" {
			t.log.Info("TLS of this binary is not followed", "path", path, "library", b.library, "reason", b.reason, "detail", b.detail)
		} else {
			t.log.Info("TLS followed with uprobes", "path", path, "library", b.library, "probes", len(b.probes), "detail", b.detail)
		}
	}
	return b
}

// attach sets the uprobes of a file found to use a TLS library; t.mu held
// (or the manager not yet running). It returns nil when the file is not
// one, or the kernel refused a probe.
func (t *tlsManager) attach(k fileKey, path string) *tlsAttached {
	if a := t.attached[k]; a != nil {
		return a
	}
	b := t.verdict(k, path)
	if t.refused || b.library == "" || b.reason != "" || len(t.attached) >= t.max {
		return nil
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		t.log.Warn("cannot attach TLS uprobes", "path", path, "err", err)
		return nil
	}
	a := &tlsAttached{library: b.library, path: path, pids: map[uint32]struct{}{}}
	if t.multi {
		a.links, err = t.attachMulti(ex, b.probes)
	} else {
		a.links, err = t.attachEach(ex, b.probes)
	}
	if err != nil {
		closeLinks(a.links)
		if errors.Is(err, os.ErrPermission) {
			// The kernel's uprobe PMU wants CAP_SYS_ADMIN (Linux 6.18
			// refuses CAP_PERFMON alone); uprobe_multi links do not
			// (CAP_BPF and CAP_PERFMON load the programs, measured on
			// 6.18). Say it once, try no more.
			t.refused = true
			reason := "the kernel refuses uprobes to the agent"
			if c, cerr := capability.Current(); cerr == nil && !c.Effective.Has(capability.SysAdmin) && !t.multi {
				reason += " (CAP_SYS_ADMIN missing)"
			}
			t.log.Warn("TLS uprobes not attached: TLS is not seen", "reason", reason, "path", path, "err", err)
			return nil
		}
		t.log.Warn("cannot attach TLS uprobes", "path", path, "err", err)
		return nil
	}
	t.attached[k] = a
	return a
}

// attachEach sets one perf-event uprobe link per probe. On an error it
// returns the links made so far, for the caller to close.
func (t *tlsManager) attachEach(ex *link.Executable, probes []tlsProbe) ([]link.Link, error) {
	var links []link.Link
	for _, p := range probes {
		prog := t.progs[p.prog]
		if prog == nil {
			return links, errors.New("program " + p.prog + " not loaded")
		}
		opts := &link.UprobeOptions{Address: p.offset, Cookie: p.cookie}
		var l link.Link
		var err error
		if p.ret {
			l, err = ex.Uretprobe("", prog, opts)
		} else {
			l, err = ex.Uprobe("", prog, opts)
		}
		if err != nil {
			return links, err
		}
		links = append(links, l)
	}
	return links, nil
}

// attachMulti sets one uprobe_multi link per program and kind (entry or
// return) covering all its offsets in the file, each with its own attach
// cookie (bpf_get_attach_cookie in bpf/tls.h reads it alike). The
// programs were loaded for it (objects.uprobeMulti). On an error it
// returns the links made so far, for the caller to close.
func (t *tlsManager) attachMulti(ex *link.Executable, probes []tlsProbe) ([]link.Link, error) {
	type group struct {
		prog string
		ret  bool
	}
	var order []group
	addrs := map[group][]uint64{}
	cookies := map[group][]uint64{}
	for _, p := range probes {
		g := group{p.prog, p.ret}
		if _, ok := addrs[g]; !ok {
			order = append(order, g)
		}
		addrs[g] = append(addrs[g], p.offset)
		cookies[g] = append(cookies[g], p.cookie)
	}
	var links []link.Link
	for _, g := range order {
		prog := t.progs[g.prog]
		if prog == nil {
			return links, errors.New("program " + g.prog + " not loaded")
		}
		opts := &link.UprobeMultiOptions{Addresses: addrs[g], Cookies: cookies[g]}
		var l link.Link
		var err error
		if g.ret {
			l, err = ex.UretprobeMulti(nil, prog, opts)
		} else {
			l, err = ex.UprobeMulti(nil, prog, opts)
		}
		if err != nil {
			return links, err
		}
		links = append(links, l)
	}
	return links, nil
}

// forget drops a process and detaches the files it was the last user of;
// t.mu held.
func (t *tlsManager) forget(pid uint32) {
	p := t.procs[pid]
	if p == nil {
		return
	}
	delete(t.procs, pid)
	for _, k := range p.files {
		a := t.attached[k]
		if a == nil {
			continue
		}
		delete(a.pids, pid)
		if len(a.pids) == 0 && !a.pinned {
			closeLinks(a.links)
			delete(t.attached, k)
		}
	}
}

// covers reports whether pid's TLS is followed (tests).
func (t *tlsManager) covers(pid uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.procs[pid]
	return p != nil && len(p.files) > 0
}

// uncoveredReason is why pid's TLS is not followed, "" if it is or uses
// none (tests).
func (t *tlsManager) uncoveredReason(pid uint32) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.procs[pid]; p != nil {
		return p.uncovered
	}
	return ""
}

// tlsMetrics are the TLS discovery's and programs' metrics, read at
// collection.
type tlsMetrics struct {
	attached, processes, uncovered, execsDropped, callsDropped *prometheus.Desc
}

var tlsDescs = tlsMetrics{
	attached: prometheus.NewDesc("vigil_ebpf_tls_attached",
		"Executables and libraries the TLS uprobes are attached to, by TLS library (go: crypto/tls; openssl: libssl or a static OpenSSL API).",
		[]string{"library"}, nil),
	processes: prometheus.NewDesc("vigil_ebpf_tls_processes",
		"Processes whose TLS plaintext is followed, by TLS library.", []string{"library"}, nil),
	uncovered: prometheus.NewDesc("vigil_ebpf_tls_uncovered_processes",
		"Processes using TLS whose plaintext is not followed, by reason.", []string{"reason"}, nil),
	execsDropped: prometheus.NewDesc("vigil_ebpf_tls_exec_events_dropped_total",
		"Exec events the TLS discovery's queue had no room for (the process is found by the next /proc rescan).", nil, nil),
	callsDropped: prometheus.NewDesc("vigil_ebpf_tls_calls_dropped_total",
		"TLS reads and writes whose plaintext was not taken, by reason (go_no_fd: the descriptor behind a tls.Conn could not be read; "+
			"go_read_unseen: a Read returned whose entry was not seen; ssl_no_fd: an SSL call on a connection whose socket was never seen; "+
			"h2: the start of HTTP/2 inside TLS that found no room for its frame cursor, and is not followed).",
		[]string{"reason"}, nil),
}

// tlsCountNames name the kernel's tls_counts, indexed like enum
// vigil_tls_count in bpf/tls.h.
var tlsCountNames = []string{"go_no_fd", "go_read_unseen", "ssl_no_fd", "h2"}

// collect exports the discovery's state.
func (t *tlsManager) collect(ch chan<- prometheus.Metric) {
	m := &tlsDescs
	t.mu.Lock()
	defer t.mu.Unlock()
	files := map[string]int{tlsLibGo: 0, tlsLibOpenSSL: 0}
	procs := map[string]map[uint32]bool{tlsLibGo: {}, tlsLibOpenSSL: {}}
	for _, a := range t.attached {
		files[a.library]++
		for pid := range a.pids {
			procs[a.library][pid] = true
		}
	}
	for lib, n := range files {
		ch <- prometheus.MustNewConstMetric(m.attached, prometheus.GaugeValue, float64(n), lib)
		ch <- prometheus.MustNewConstMetric(m.processes, prometheus.GaugeValue, float64(len(procs[lib])), lib)
	}
	reasons := map[string]int{}
	for _, r := range []string{uncoveredGoVersion, uncoveredArch, uncoveredNoFunctions, uncoveredDisasm, uncoveredLimit,
		uncoveredAttach, uncoveredPrivilege, uncoveredGnuTLS, uncoveredNSS, uncoveredNoAccess} {
		reasons[r] = 0
	}
	for _, p := range t.procs {
		if p.uncovered != "" {
			reasons[p.uncovered]++
		}
	}
	for r, n := range reasons {
		ch <- prometheus.MustNewConstMetric(m.uncovered, prometheus.GaugeValue, float64(n), r)
	}
	ch <- prometheus.MustNewConstMetric(m.execsDropped, prometheus.CounterValue, float64(t.dropped))
}

// mappedTLSLibs returns the paths of the TLS libraries a process maps
// (from /proc/PID/maps: libssl, GnuTLS, NSS), each once.
func mappedTLSLibs(maps string) []string {
	f, err := os.Open(maps)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	read := 0
	for sc.Scan() {
		line := sc.Bytes()
		if read += len(line); read > tlsMaxMapsFileSize {
			break
		}
		i := bytes.IndexByte(line, '/')
		if i < 0 || !bytes.Contains(line[i:], []byte(".so")) {
			continue
		}
		p := string(line[i:])
		base := filepath.Base(p)
		if !sslLibName(base) && !strings.HasPrefix(base, "libgnutls.so") && !strings.HasPrefix(base, "libssl3.so") &&
			!strings.HasPrefix(base, "libnss3.so") {
			continue
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// statKey is the device and inode of the file at path (links followed).
func statKey(path string) (fileKey, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileKey{}, err
	}
	return fileKey{uint64(st.Dev), st.Ino}, nil
}

// collectTLSCounts exports the kernel's tls_counts.
func collectTLSCounts(m *ebpf.Map, ch chan<- prometheus.Metric) error {
	for i, n := range tlsCountNames {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return err
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		ch <- prometheus.MustNewConstMetric(tlsDescs.callsDropped, prometheus.CounterValue, float64(sum), n)
	}
	return nil
}

// startTLS starts the TLS discovery when the TLS programs loaded; the
// process programs' exec and exit events feed it.
func (c *collector) startTLS(procFS string) {
	c.tls = newTLSManagerFor(c.objs, procFS, c.set.Paths.RootFS, c.cfg.MaxTLSTargets, c.log)
	if c.tls == nil {
		return
	}
	c.handlers.tlsExec, c.handlers.tlsExit = c.tls.exec, c.tls.exited
	c.tls.start()
}

// newTLSManagerFor is the TLS discovery for the uprobe programs of o, nil
// when none loaded.
func newTLSManagerFor(o *objects, procFS, rootFS string, max int, log *slog.Logger) *tlsManager {
	progs := map[string]*ebpf.Program{}
	for _, p := range programs {
		if p.uprobe && o.progs[p.name] != nil {
			progs[p.name] = o.progs[p.name]
		}
	}
	if len(progs) == 0 {
		return nil
	}
	if o.uprobeMulti {
		log.Info("TLS uprobes attached with uprobe_multi links: one link per program and file, each detached with one kernel grace period",
			"uprobe_multi", true)
	} else {
		log.Info("TLS uprobes attached one link per probe: each detaches with its own kernel grace period",
			"uprobe_multi", false, "reason", o.noUprobeMulti)
	}
	return newTLSManager(procFS, rootFS, max, progs, o.uprobeMulti, log)
}
