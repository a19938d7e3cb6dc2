//go:build linux

// Command ebpf-overhead measures what Vigil's eBPF programs cost the
// workloads they watch: it times a loopback connect loop, a keep-alive
// HTTP loop, (when Debian's redis-server is installed) a Redis GET loop
// on one connection, (when Debian's postgresql is installed) PostgreSQL
// SELECT 1 loops on one connection (simple and extended query protocol),
// and UDP loops on a connected socket, one not DNS and
// one of DNS queries to a server on a DNS port, and a gRPC loop of unary
// calls over one clear-text HTTP/2 connection (both sides in this
// process), with the programs detached and attached, alternating
// rounds in one run, and reports the ratio, the events consumed per second
// and the events lost. hack/bench/ebpf.sh runs it for `make bench`; it
// needs root.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/ebpf"
	"github.com/vigil-agent/vigil/component"
	"github.com/vigil-agent/vigil/internal/event"
)

func main() {
	conns := flag.Int("connections", 20000, "connections per round of the connect loop")
	reqs := flag.Int("requests", 20000, "requests per round of the keep-alive HTTP loop")
	rounds := flag.Int("rounds", 3, "rounds per mode; the median is reported")
	flag.IntVar(&redisReqs, "redis-requests", 20000, "commands per round of the Redis loop (0: no Redis loop)")
	flag.StringVar(&redisServer, "redis-server", "redis-server", "the redis-server binary for the Redis loop (skipped with a message when it is missing)")
	flag.IntVar(&pgReqs, "pg-requests", 20000, "queries per round of each PostgreSQL loop, simple and extended protocol (0: no PostgreSQL loops)")
	flag.StringVar(&pgBin, "pg-bin", "", "the folder of PostgreSQL's initdb and postgres (default: PATH, else the newest /usr/lib/postgresql/*/bin; the loops are skipped with a message when they are missing)")
	flag.IntVar(&httpsReqs, "https-requests", 20000, "requests per round of the keep-alive HTTPS loop (Go crypto/tls on both sides; 0: none)")
	flag.IntVar(&udpReqs, "udp-requests", 20000, "round trips per round of the UDP loop that is not DNS (0: none)")
	flag.IntVar(&dnsReqs, "dns-requests", 20000, "queries per round of the DNS/UDP loop (0: none)")
	flag.IntVar(&grpcReqs, "grpc-requests", 20000, "unary calls per round of the gRPC loop (grpc-go health checks over one HTTP/2 connection, both sides in this process; 0: none)")
	flag.IntVar(&dnsPort, "dns-port", 0, "internal, with -agent: the DNS loop's server port, given to the collector as dns_ports")
	flag.BoolVar(&bpfStats, "bpf-stats", false, "enable the kernel's BPF run-time statistics and report each program's cost (adds a little overhead)")
	flag.StringVar(&agentProfile, "agent-cpuprofile", "", "write a CPU profile of the agent process of the last attached phase to this file")
	flag.StringVar(&programGroups, "programs", "all", "program groups to attach, comma-separated: tcp, http, process (with oom and cgroups), or all")
	agentMode := flag.Bool("agent", false, "internal: run only the collector until stdin closes, then print its counters")
	flag.BoolVar(&hooksOnly, "hooks-only", false, "internal, with -agent: attach programs that return at once at the same hooks instead of the collector")
	flag.Parse()
	if *agentMode {
		if err := runAgent(); err != nil {
			fmt.Fprintln(os.Stderr, "ebpf-overhead agent:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*conns, *reqs, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "ebpf-overhead:", err)
		os.Exit(1)
	}
}

var (
	hooksOnly     bool
	bpfStats      bool
	agentProfile  string
	programGroups string
	redisReqs     int
	redisServer   string
	pgReqs        int
	pgBin         string
	udpReqs       int
	httpsReqs     int
	dnsReqs       int
	dnsPort       int
	grpcReqs      int
)

// selectPrograms switches on only the named program groups.
func selectPrograms(p *ebpf.ProgramsConfig, groups string) error {
	if groups == "all" {
		return nil
	}
	*p = ebpf.ProgramsConfig{}
	for _, g := range strings.Split(groups, ",") {
		switch g {
		case "tcp":
			p.TCP, p.TCPRetransmits, p.TCPResets = true, true, true
		case "http":
			p.HTTP, p.TLS = true, true
		case "process":
			p.Process, p.OOM, p.Cgroups = true, true, true
		default:
			return fmt.Errorf("-programs: unknown group %q (tcp, http, process or all)", g)
		}
	}
	return nil
}

// agent is the eBPF collector as the agent runs it.
type agent struct {
	c   collectors.Collector
	reg *prometheus.Registry
}

type adapter struct{ c collectors.Collector }

func (a adapter) Describe(chan<- *prometheus.Desc) {}
func (a adapter) Collect(ch chan<- prometheus.Metric) {
	_ = a.c.Update(context.Background(), ch)
}

func startAgent() (*agent, error) {
	f, ok := component.Lookup(component.KindCollector, ebpf.Name)
	if !ok {
		return nil, fmt.Errorf("collector %s not registered", ebpf.Name)
	}
	sub := event.NewBus()
	cfg := f.NewConfig().(*ebpf.Config)
	cfg.BPFStats = bpfStats
	if dnsPort != 0 {
		cfg.DNSPorts = []int{dnsPort}
	}
	if err := selectPrograms(&cfg.Programs, programGroups); err != nil {
		return nil, err
	}
	c, err := f.NewCollector(cfg, collectors.Settings{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Events: sub,
		Traces: consumertest.NewNop(), Paths: collectors.Paths{ProcFS: "/proc", SysFS: "/sys", RootFS: "/"},
	})
	if err != nil {
		return nil, err
	}
	if err := c.(collectors.Lifecycle).Start(context.Background()); err != nil {
		return nil, err
	}
	a := &agent{c: c, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(adapter{c})
	if n := a.sum("vigil_ebpf_program_loaded"); n == 0 {
		_ = a.stop()
		return nil, fmt.Errorf("no eBPF program loaded (root needed)")
	}
	return a, nil
}

func (a *agent) stop() error { return a.c.(collectors.Lifecycle).Shutdown(context.Background()) }

// sum adds every sample of the named metric.
func (a *agent) sum(name string) float64 {
	mfs, _ := a.reg.Gather()
	s := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			s += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return s
}

// runAgent is the collector in its own process, as the agent runs it
// beside the workloads: it prints "ready", runs until stdin closes, then
// prints "events lost" and the per-program kernel statistics.
func runAgent() error {
	if hooksOnly {
		cfg := ebpf.NewConfig()
		if err := selectPrograms(&cfg.Programs, programGroups); err != nil {
			return err
		}
		detach, err := ebpf.AttachHooksOnly(cfg)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		detach()
		fmt.Println("0 0")
		return nil
	}
	a, err := startAgent()
	if err != nil {
		return err
	}
	if agentProfile != "" {
		f, err := os.Create(agentProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if agentProfile != "" {
		pprof.StopCPUProfile()
	}
	time.Sleep(300 * time.Millisecond) // let the reader drain
	runTime, runs := map[string]float64{}, map[string]float64{}
	a.addStats(runTime, runs)
	fmt.Printf("%f %f\n", a.sum("vigil_ebpf_events_total"), a.sum("vigil_ebpf_events_lost_total"))
	for p := range runTime {
		fmt.Printf("%s %f %f\n", p, runTime[p], runs[p])
	}
	return a.stop()
}

// agentProc is a running agent child process.
type agentProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func spawnAgent(hooks bool) (*agentProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-agent", "-programs", programGroups, "-dns-port", fmt.Sprint(dnsPort)}
	if hooks {
		args = append(args, "-hooks-only")
	}
	if bpfStats && !hooks {
		args = append(args, "-bpf-stats")
	}
	if agentProfile != "" && !hooks {
		args = append(args, "-agent-cpuprofile", agentProfile)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &agentProc{cmd: cmd, stdin: in, out: bufio.NewReader(outPipe)}
	if line, err := p.out.ReadString('\n'); err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("agent did not start: %q %v", line, err)
	}
	return p, nil
}

// finish stops the agent and returns its events, losses, kernel stats and
// the CPU time it used.
func (p *agentProc) finish(runTime, runs map[string]float64) (events, lost float64, cpu time.Duration, err error) {
	p.stdin.Close()
	if _, err = fmt.Fscanf(p.out, "%f %f\n", &events, &lost); err != nil {
		return
	}
	for {
		var name string
		var rt, n float64
		if _, e := fmt.Fscanf(p.out, "%s %f %f\n", &name, &rt, &n); e != nil {
			break
		}
		runTime[name] += rt
		runs[name] += n
	}
	if err = p.cmd.Wait(); err != nil {
		return
	}
	ru := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return
}

// addStats adds each program's run time and run count.
func (a *agent) addStats(runTime, runs map[string]float64) {
	mfs, _ := a.reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			prog := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "program" {
					prog = l.GetValue()
				}
			}
			switch mf.GetName() {
			case "vigil_ebpf_program_run_seconds_total":
				runTime[prog] += m.GetCounter().GetValue()
			case "vigil_ebpf_program_runs_total":
				runs[prog] += m.GetCounter().GetValue()
			}
		}
	}
}

// cpuTime is the CPU time (user and system, all threads) this process
// used so far: the loops' own work plus the eBPF programs that run in
// their syscalls. It is far less disturbed by other load on the machine
// than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs loop and returns its wall and CPU time.
func measure(loop func() (time.Duration, error)) (wall, cpu time.Duration, err error) {
	c0 := cpuTime()
	wall, err = loop()
	return wall, cpuTime() - c0, err
}

// connectLoop opens and closes n loopback connections one after another.
func connectLoop(addr string, n int) (time.Duration, error) {
	start := time.Now()
	for range n {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			return 0, err
		}
		c.Close()
	}
	return time.Since(start), nil
}

// httpLoop sends n requests over one keep-alive connection.
func httpLoop(url string, n int) (time.Duration, error) {
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer cl.CloseIdleConnections()
	start := time.Now()
	for range n {
		resp, err := cl.Get(url)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return time.Since(start), nil
}

// startHTTPS starts an HTTPS server (HTTP/1.1 only, a self-signed
// certificate made here) on a free loopback port and returns its URL, a
// client that trusts it, and a stop function.
func startHTTPS() (string, *http.Client, func(), error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		IsCA: true, BasicConstraintsValid: true, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", nil, nil, err
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1: the decoders' protocol
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("ok"))
		})}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return "https://" + ln.Addr().String() + "/api/items/42", cl, func() { _ = srv.Close() }, nil
}

// httpsLoop sends n requests over one keep-alive TLS connection (made
// anew each round: its handshake is part of the round).
func httpsLoop(cl *http.Client, url string, n int) (time.Duration, error) {
	defer cl.CloseIdleConnections()
	start := time.Now()
	for range n {
		resp, err := cl.Get(url)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return time.Since(start), nil
}

// startRedis starts redis-server on a free loopback port (no persistence)
// and returns its address and a function that stops it.
func startRedis() (string, func(), error) {
	bin, err := exec.LookPath(redisServer)
	if err != nil {
		return "", nil, err
	}
	addr, port, err := freeLoopbackAddr()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", "")
	stop, err := startServer("redis-server on "+addr, cmd, func() error {
		c, err := net.Dial("tcp4", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return addr, stop, err
}

// freeLoopbackAddr returns a free 127.0.0.1 address and its port.
func freeLoopbackAddr() (string, string, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	defer l.Close()
	addr := l.Addr().String()
	_, port, err := net.SplitHostPort(addr)
	return addr, port, err
}

// startServer starts a server process (Redis, PostgreSQL) and waits up to
// 10 s until ready passes. It returns a function that stops it (SIGINT:
// a fast shutdown for both; killed after 10 s).
func startServer(name string, cmd *exec.Cmd, ready func() error) (func(), error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := ready()
		if err == nil {
			return stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		select {
		case <-done:
			return nil, fmt.Errorf("%s exited: %s (%w)", name, cmd.ProcessState, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// redisLoop sends n GET commands over one connection, one at a time,
// and reads each reply (a 2-byte bulk string), without a client library.
func redisLoop(addr string, n int) (time.Duration, error) {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Write([]byte("*3\r\n$3\r\nSET\r\n$4\r\nitem\r\n$2\r\nok\r\n")); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return 0, err
	}
	get := []byte("*2\r\n$3\r\nGET\r\n$4\r\nitem\r\n")
	reply := make([]byte, len("$2\r\nok\r\n"))
	start := time.Now()
	for range n {
		if _, err := c.Write(get); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(r, reply); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// dnsQuery is a DNS query for www.vigil.test A (ID 0x1234), and dnsAnswer
// its answer (NOERROR, no records: the size does not matter here).
var (
	dnsQuery  = []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x05vigil\x04test\x00\x00\x01\x00\x01")
	dnsAnswer = []byte("\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x05vigil\x04test\x00\x00\x01\x00\x01")
)

// startUDPEcho starts a UDP server on a free loopback port that answers
// every datagram with answer (or echoes it when answer is nil), and
// returns its port and a stop function.
func startUDPEcho(answer []byte) (int, func(), error) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	go func() {
		b := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			out := b[:n]
			if answer != nil {
				out = answer
			}
			if _, err := pc.WriteTo(out, addr); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port, func() { pc.Close() }, nil
}

// udpLoop sends n datagrams of msg to the server on port, one at a time,
// over a connected socket, and reads each answer.
func udpLoop(port int, msg []byte, n int) (time.Duration, error) {
	c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	b := make([]byte, 1500)
	start := time.Now()
	for range n {
		if _, err := c.Write(msg); err != nil {
			return 0, err
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(b); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// startGRPC serves grpc-go's health service on a free loopback port.
func startGRPC() (string, func(), error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(l) }()
	return l.Addr().String(), srv.Stop, nil
}

// grpcLoop makes n health checks, one at a time, over a new connection
// (the programs follow HTTP/2 from a connection's preface: one opened
// before they attached is not followed).
func grpcLoop(addr string, n int) (time.Duration, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx := context.Background()
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil { // connects
		return 0, err
	}
	start := time.Now()
	for range n {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// pairedRatio is the median over rounds of with/without.
func pairedRatio(with, without []time.Duration) float64 {
	r := make([]float64, len(with))
	for i := range with {
		r[i] = float64(with[i]) / float64(without[i])
	}
	slices.Sort(r)
	return r[len(r)/2]
}

// pairedDiff is the median over rounds of (with-without)/n.
func pairedDiff(with, without []time.Duration, n int) time.Duration {
	d := make([]time.Duration, len(with))
	for i := range with {
		d[i] = (with[i] - without[i]) / time.Duration(n)
	}
	return median(d)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func run(conns, reqs, rounds int) error {
	// Servers: a TCP listener that accepts and closes, and an HTTP server.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	hl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})}
	go func() { _ = srv.Serve(hl) }()
	defer srv.Close()
	url := "http://" + hl.Addr().String() + "/api/items/42"
	redisAddr := ""
	if redisReqs > 0 {
		addr, stop, err := startRedis()
		if err != nil {
			fmt.Printf("no Redis loop: %v\n", err)
			redisReqs = 0
		} else {
			defer stop()
			redisAddr = addr
		}
	}

	pgDSN := ""
	if pgReqs > 0 {
		dsn, stop, err := startPostgres()
		if err != nil {
			fmt.Printf("no PostgreSQL loops: %v\n", err)
			pgReqs = 0
		} else {
			defer stop()
			pgDSN = dsn
		}
	}

	// UDP: a server that echoes (not on a DNS port) and one that answers
	// DNS queries on the port the agent is told is a DNS port.
	udpPort := 0
	if udpReqs > 0 {
		p, stop, err := startUDPEcho(nil)
		if err != nil {
			return err
		}
		defer stop()
		udpPort = p
	}
	if dnsReqs > 0 {
		p, stop, err := startUDPEcho(dnsAnswer)
		if err != nil {
			return err
		}
		defer stop()
		dnsPort = p
	}
	udpMsg := make([]byte, len(dnsQuery)) // as long as a query, not DNS
	var httpsURL string
	var httpsClient *http.Client
	if httpsReqs > 0 {
		u, cl, stop, err := startHTTPS()
		if err != nil {
			return err
		}
		defer stop()
		httpsURL, httpsClient = u, cl
	}
	grpcAddr := ""
	if grpcReqs > 0 {
		addr, stop, err := startGRPC()
		if err != nil {
			return err
		}
		defer stop()
		grpcAddr = addr
	}

	// Per mode (without, hooks only, with eBPF) the wall and CPU times of
	// each round.
	type result struct{ wall, cpu [3][]time.Duration }
	const without, hooks, with = 0, 1, 2
	var tcp, web, rds, pgs, pge, udp, dns, sec, grp result
	var events, lost float64
	var eventTime, agentCPU time.Duration
	runTime, runs := map[string]float64{}, map[string]float64{}
	// Warm up both paths once.
	if _, err := connectLoop(ln.Addr().String(), 1000); err != nil {
		return err
	}
	if _, err := httpLoop(url, 1000); err != nil {
		return err
	}
	if redisReqs > 0 {
		if _, err := redisLoop(redisAddr, 1000); err != nil {
			return err
		}
	}
	if pgReqs > 0 {
		for _, extended := range []bool{false, true} {
			if _, err := pgLoop(pgDSN, 1000, extended); err != nil {
				return err
			}
		}
	}
	if httpsReqs > 0 {
		if _, err := httpsLoop(httpsClient, httpsURL, 1000); err != nil {
			return err
		}
	}
	if udpReqs > 0 {
		if _, err := udpLoop(udpPort, udpMsg, 1000); err != nil {
			return err
		}
	}
	if dnsReqs > 0 {
		if _, err := udpLoop(dnsPort, dnsQuery, 1000); err != nil {
			return err
		}
	}
	if grpcReqs > 0 {
		if _, err := grpcLoop(grpcAddr, 1000); err != nil {
			return err
		}
	}
	// The agent's CPU time with no traffic (start-up: BTF, loading,
	// attaching; shut-down), subtracted from the rounds' agent CPU.
	idle, err := spawnAgent(false)
	if err != nil {
		return err
	}
	_, _, idleCPU, err := idle.finish(map[string]float64{}, map[string]float64{})
	if err != nil {
		return err
	}
	// phase times both loops once in the given mode.
	phase := func(mode int) error {
		var a *agentProc
		if mode != without {
			var err error
			if a, err = spawnAgent(mode == hooks); err != nil {
				return err
			}
		}
		t0 := time.Now()
		d, c, err := measure(func() (time.Duration, error) { return connectLoop(ln.Addr().String(), conns) })
		if err != nil {
			return err
		}
		d2, c2, err := measure(func() (time.Duration, error) { return httpLoop(url, reqs) })
		if err != nil {
			return err
		}
		if redisReqs > 0 {
			d3, c3, err := measure(func() (time.Duration, error) { return redisLoop(redisAddr, redisReqs) })
			if err != nil {
				return err
			}
			rds.wall[mode], rds.cpu[mode] = append(rds.wall[mode], d3), append(rds.cpu[mode], c3)
		}
		if pgReqs > 0 {
			for _, r := range []struct {
				res      *result
				extended bool
			}{{&pgs, false}, {&pge, true}} {
				d, c, err := measure(func() (time.Duration, error) { return pgLoop(pgDSN, pgReqs, r.extended) })
				if err != nil {
					return err
				}
				r.res.wall[mode], r.res.cpu[mode] = append(r.res.wall[mode], d), append(r.res.cpu[mode], c)
			}
		}
		if httpsReqs > 0 {
			d6, c6, err := measure(func() (time.Duration, error) { return httpsLoop(httpsClient, httpsURL, httpsReqs) })
			if err != nil {
				return err
			}
			sec.wall[mode], sec.cpu[mode] = append(sec.wall[mode], d6), append(sec.cpu[mode], c6)
		}
		if udpReqs > 0 {
			d4, c4, err := measure(func() (time.Duration, error) { return udpLoop(udpPort, udpMsg, udpReqs) })
			if err != nil {
				return err
			}
			udp.wall[mode], udp.cpu[mode] = append(udp.wall[mode], d4), append(udp.cpu[mode], c4)
		}
		if dnsReqs > 0 {
			d5, c5, err := measure(func() (time.Duration, error) { return udpLoop(dnsPort, dnsQuery, dnsReqs) })
			if err != nil {
				return err
			}
			dns.wall[mode], dns.cpu[mode] = append(dns.wall[mode], d5), append(dns.cpu[mode], c5)
		}
		if grpcReqs > 0 {
			d6, c6, err := measure(func() (time.Duration, error) { return grpcLoop(grpcAddr, grpcReqs) })
			if err != nil {
				return err
			}
			grp.wall[mode], grp.cpu[mode] = append(grp.wall[mode], d6), append(grp.cpu[mode], c6)
		}
		tcp.wall[mode], tcp.cpu[mode] = append(tcp.wall[mode], d), append(tcp.cpu[mode], c)
		web.wall[mode], web.cpu[mode] = append(web.wall[mode], d2), append(web.cpu[mode], c2)
		if mode == without {
			return nil
		}
		elapsed := time.Since(t0)
		ev, lo, cpu, err := a.finish(runTime, runs)
		if err != nil {
			return err
		}
		if mode == with {
			eventTime += elapsed
			events += ev
			lost += lo
			agentCPU += cpu
		}
		return nil
	}
	// Rotate the order of the modes from round to round so that a drift in
	// the machine's load does not favour one; ratios are taken per round
	// (the runs of a round are close in time) and their median reported.
	orders := [][3]int{{without, hooks, with}, {with, hooks, without}, {hooks, with, without},
		{without, with, hooks}, {with, without, hooks}, {hooks, without, with}}
	for i := range rounds {
		for _, mode := range orders[i%len(orders)] {
			if err := phase(mode); err != nil {
				return err
			}
		}
	}

	for _, t := range []struct {
		what string
		of   func(result) [3][]time.Duration
	}{
		{"wall time", func(r result) [3][]time.Duration { return r.wall }},
		{"CPU time of the loops", func(r result) [3][]time.Duration { return r.cpu }},
	} {
		fmt.Printf("%-34s %12s %12s %12s %8s %8s\n", fmt.Sprintf("%s (medians of %d rounds)", t.what, rounds), "without", "hooks only", "with eBPF",
			"hooks", "ratio")
		row := func(name string, r result) {
			m := t.of(r)
			fmt.Printf("%-34s %12s %12s %12s %8.3f %8.3f\n", name, median(m[without]).Round(time.Millisecond), median(m[hooks]).Round(time.Millisecond),
				median(m[with]).Round(time.Millisecond), pairedRatio(m[hooks], m[without]), pairedRatio(m[with], m[without]))
		}
		row(fmt.Sprintf("connect loop, %d connections", conns), tcp)
		row(fmt.Sprintf("keep-alive HTTP, %d requests", reqs), web)
		if redisReqs > 0 {
			row(fmt.Sprintf("Redis GET loop, %d commands", redisReqs), rds)
		}
		if pgReqs > 0 {
			row(fmt.Sprintf("PostgreSQL simple, %d SELECT 1", pgReqs), pgs)
			row(fmt.Sprintf("PostgreSQL extended, %d SELECT", pgReqs), pge)
		}
		if httpsReqs > 0 {
			row(fmt.Sprintf("keep-alive HTTPS, %d requests", httpsReqs), sec)
		}
		if udpReqs > 0 {
			row(fmt.Sprintf("UDP loop (not DNS), %d round trips", udpReqs), udp)
		}
		if dnsReqs > 0 {
			row(fmt.Sprintf("DNS/UDP loop, %d queries", dnsReqs), dns)
		}
		if grpcReqs > 0 {
			row(fmt.Sprintf("gRPC loop, %d unary calls", grpcReqs), grp)
		}
	}
	// What Vigil's programs add per request or connection over the
	// do-nothing programs: the loops' CPU time, paired per round.
	fmt.Printf("%-34s connect loop %s per connection, keep-alive HTTP %s per request (medians of per-round CPU differences)\n",
		"added over hooks only", pairedDiff(tcp.cpu[with], tcp.cpu[hooks], conns), pairedDiff(web.cpu[with], web.cpu[hooks], reqs))
	if redisReqs > 0 {
		fmt.Printf("%-34s Redis loop %s per command (client side only: the server is another process)\n", "",
			pairedDiff(rds.cpu[with], rds.cpu[hooks], redisReqs))
	}
	if pgReqs > 0 {
		fmt.Printf("%-34s PostgreSQL %s per simple query, %s per extended query (client side only: the server is another process)\n", "",
			pairedDiff(pgs.cpu[with], pgs.cpu[hooks], pgReqs), pairedDiff(pge.cpu[with], pge.cpu[hooks], pgReqs))
	}
	if httpsReqs > 0 {
		fmt.Printf("%-34s keep-alive HTTPS %s per request over hooks only, %s over no programs (both sides in this process: 4 TLS uprobe hits a request)\n", "",
			pairedDiff(sec.cpu[with], sec.cpu[hooks], httpsReqs), pairedDiff(sec.cpu[with], sec.cpu[without], httpsReqs))
	}
	if udpReqs > 0 {
		fmt.Printf("%-34s UDP loop (not DNS) %s per round trip (both sides in this process)\n", "", pairedDiff(udp.cpu[with], udp.cpu[hooks], udpReqs))
	}
	if dnsReqs > 0 {
		fmt.Printf("%-34s DNS loop %s per query (both sides in this process)\n", "", pairedDiff(dns.cpu[with], dns.cpu[hooks], dnsReqs))
	}
	if grpcReqs > 0 {
		fmt.Printf("%-34s gRPC loop %s per unary call (both sides in this process)\n", "", pairedDiff(grp.cpu[with], grp.cpu[hooks], grpcReqs))
	}
	fmt.Printf("%-34s %12.0f events/s over %d rounds (%.0f events), lost %.0f\n", "events consumed", events/eventTime.Seconds(), rounds, events, lost)
	busy := agentCPU - time.Duration(rounds)*idleCPU
	fmt.Printf("%-34s %12s over %d rounds (start-up %s each excluded): %.1f µs per connection+request\n", "agent process CPU (user+sys)",
		busy.Round(time.Millisecond), rounds, idleCPU.Round(time.Millisecond), float64(busy.Microseconds())/float64(rounds*(conns+reqs+redisReqs+2*pgReqs+httpsReqs+udpReqs+dnsReqs+grpcReqs)))
	if bpfStats {
		total := 0.0
		for _, p := range slices.Sorted(maps.Keys(runTime)) {
			if runs[p] > 0 {
				fmt.Printf("  kernel: %-22s %10.0f runs %8.0f ns/run %8.3f s total\n", p, runs[p], runTime[p]/runs[p]*1e9, runTime[p])
			}
			total += runTime[p]
		}
		fmt.Printf("  kernel: all programs %.3f s over %s of attached rounds\n", total, eventTime.Round(time.Millisecond))
		// Per unit of work: the HTTP programs (which also see Redis and PostgreSQL) by
		// request or command, TCP's by connection (each runs almost only
		// in its own loop).
		group := func(prefix string) float64 {
			t := 0.0
			for p, rt := range runTime {
				if strings.HasPrefix(p, prefix) {
					t += rt
				}
			}
			return t
		}
		fmt.Printf("  kernel: HTTP programs %s per HTTP request, Redis command, PostgreSQL query, UDP round trip, DNS query or gRPC call, TCP programs %s per connection (upper bounds: the statistics count part of their own clock reads)\n",
			time.Duration(group("http_")/float64(rounds*(reqs+redisReqs+2*pgReqs+httpsReqs+udpReqs+dnsReqs+grpcReqs))*1e9), time.Duration(group("tcp_")/float64(rounds*conns)*1e9))
		if httpsReqs > 0 {
			tlsT := group("go_tls_") + group("ssl_")
			fmt.Printf("  kernel: TLS programs %s per HTTPS request\n", time.Duration(tlsT/float64(rounds*httpsReqs)*1e9))
		}
	}
	fmt.Println(strings.Repeat("-", 70))
	fmt.Println("goal: ratio <= 1.03 with zero events lost. \"hooks only\" attaches a program that returns at once at each hook")
	fmt.Println("Vigil uses: its ratio is the kernel's own cost of running any program there, which no program can go below.")
	fmt.Println("Wall time on a shared machine is noisy; the CPU time is the loops' own (user+system, so including the eBPF")
	fmt.Println("programs run in their syscalls), without the agent's.")
	return nil
}
