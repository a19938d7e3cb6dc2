//go:build linux

package dashboards

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// The live tests run the real agent (the binary `go build ./cmd/vigil`
// makes, with every component it has enabled) while a workload does real
// work, then check the dashboards against what it exports.

const (
	// unitName is the systemd-style cgroup the test workload runs in; the
	// agent reports it as unit="vigil-dashboards-e2e.service".
	unitName = "vigil-dashboards-e2e.service"
	// oomUnit is a cgroup with a 32 MiB limit in which a process is OOM-killed.
	oomUnit = "vigil-dashboards-oom.service"
	// podNamespace, podName: the pod whose log file the test writes.
	podNamespace = "vigil-e2e"
	podName      = "web-0"
	// Alert names of the test's rules; the healing policies match them.
	alertDryRun = "VigilDashboardsDryRun"
	alertVeto   = "VigilDashboardsVeto"
	alertAct    = "VigilDashboardsAct"
	// vetoTrigger is the log text that makes alertVeto fire.
	vetoTrigger = "vigil-dashboards-veto-trigger"
)

// component is a part of Vigil whose configuration the test adds when
// the binary has it.
type component struct {
	name string
	// config is the YAML fragment that enables it; {{dir}} stands for the
	// test's folder, {{loki}} for the Loki push URL.
	config string
}

// optionalComponents are the components the dashboards read that are
// built on their own branches; host and cgroup are always there.
var optionalComponents = []component{
	{"ebpf", `collectors:
  ebpf:
    enabled: true
    dns_ports: [{{dnsports}}]
`},
	{"logs", `collectors:
  logs:
    enabled: true
    pod_logs: {dir: {{dir}}/pods}
    inputs: [{paths: ["{{dir}}/app/*.log"], labels: {job: vigil-dashboards-e2e}}]
    positions_file: {{dir}}/positions.json
    start_at: beginning
    poll_interval: 100ms
    loki: {url: "{{loki}}", labels: {cluster: e2e}, batch_wait: 200ms, buffer: {dir: {{dir}}/buffer}}
    patterns:
      - {name: timeout, literal: "timeout"}
      - {name: veto_trigger, literal: "` + vetoTrigger + `"}
`},
	{"rules", `rules:
  enabled: true
  evaluation_interval: 1s
  storage_dir: {{dir}}/rules
  rule_files: [{{dir}}/rules.yaml]
`},
	{"healing", `healing:
  enabled: true
  dry_run: false
  maintenance_file: {{dir}}/maintenance
  policies:
    routes:
      - name: e2e-act
        matchers: ['alertname="` + alertAct + `"']
        steps: [{action: exec, params: {command: [/bin/true]}}]
      - name: e2e-dry-run
        matchers: ['alertname="` + alertDryRun + `"']
        dry_run: true
        steps: [{action: exec, params: {command: [/bin/true]}}]
      - name: e2e-veto
        matchers: ['alertname="` + alertVeto + `"']
        steps: [{action: exec, params: {command: [/bin/true]}}]
`},
}

// componentOf names the component that exports a metric, to say which
// one is missing when a name is absent.
func componentOf(metric string) string {
	for _, p := range []struct{ prefix, comp string }{
		{"node_", "host"}, {"vigil_cgroup_", "cgroup"}, {"vigil_tcp_", "ebpf"}, {"vigil_http_", "ebpf"},
		{"vigil_redis_", "ebpf"}, {"vigil_postgres_", "ebpf"}, {"vigil_dns_", "ebpf"}, {"vigil_grpc_", "ebpf"},
		{"vigil_process_", "ebpf"}, {"vigil_oom_", "ebpf"}, {"vigil_log_", "logs"}, {"vigil_logs_", "logs"},
		{"vigil_remediation", "healing"}, {"vigil_healing_", "healing"}, {"vigil_rules_", "rules"},
	} {
		if strings.HasPrefix(metric, p.prefix) {
			return p.comp
		}
	}
	return "agent"
}

// liveAgent is a running agent with a working workload beside it.
type liveAgent struct {
	addr    string          // host:port of /metrics
	node    string          // the agent's node name
	dir     string          // the test's folder
	has     map[string]bool // components compiled into the binary
	missing []string        // optional components it lacks
	// oomCgroup is the 32 MiB cgroup oomKill uses.
	oomCgroup cgroupSet
	// podLog is the pod's CRI log file the workload writes.
	podLog string
	// redisAddr and postgresDSN are the Redis and PostgreSQL servers
	// (Debian's, started by the test) the workload is a client of.
	redisAddr, postgresDSN string
	// dnsAddr is the DNS server (NSD, authoritative for testenv.DNSZone)
	// the workload's resolver asks; silentDNSAddr a UDP socket that never
	// answers (its queries time out).
	dnsAddr, silentDNSAddr string
}

// startLiveAgent builds and starts the agent with every component it has,
// and starts the workload. It stops both at cleanup. The logs collector
// ships to lokiURL (a Loki push endpoint).
func startLiveAgent(t *testing.T, lokiURL string) *liveAgent {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "%s", "needs root: the eBPF collector loads programs and the test makes cgroups")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "vigil")
	build := exec.Command("go", "build", "-o", bin, "../cmd/vigil")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/vigil: %v\n%s", err, out)
	}
	la := &liveAgent{dir: dir, node: "vigil-dashboards-node", has: map[string]bool{"host": true, "cgroup": true}}

	for _, d := range []string{"pods", "app", "rules"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rulesYAML := `groups:
  - name: vigil-dashboards-e2e
    rules:
      - alert: ` + alertDryRun + `
        expr: vector(1)
      - alert: ` + alertAct + `
        expr: vector(1)
      - alert: ` + alertVeto + `
        expr: sum(vigil_log_matches_total{pattern="veto_trigger"}) > 0
`
	writeFile(t, filepath.Join(dir, "rules.yaml"), rulesYAML)
	la.redisAddr = testenv.StartRedis(t).Addr
	la.postgresDSN = testenv.StartPostgres(t).DSN()
	dns := testenv.StartDNS(t)
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	la.dnsAddr, la.silentDNSAddr = dns.Addr, silent.LocalAddr().String()
	// The agent looks at UDP ports other than 53 only when told to.
	dnsPorts := fmt.Sprintf("%d, %d", dns.Port, silent.LocalAddr().(*net.UDPAddr).Port)

	port := testenv.FreePort(t)
	la.addr = fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf("global:\n  node_name: %s\nserver:\n  listen_address: %q\nlog:\n  level: info\n  format: text\n", la.node, la.addr)
	cfg += "collectors:\n  cgroup:\n    enabled: true\n  host:\n    enabled: true\n"
	// Each optional component is added only when the binary knows it
	// ("vigil config check" on the fragment alone).
	var collectorsYAML, sectionsYAML strings.Builder
	for _, c := range optionalComponents {
		frag := strings.NewReplacer("{{dir}}", dir, "{{loki}}", lokiURL, "{{dnsports}}", dnsPorts).Replace(c.config)
		f := filepath.Join(dir, "check-"+c.name+".yaml")
		writeFile(t, f, frag)
		out, err := exec.Command(bin, "config", "check", f).CombinedOutput()
		switch {
		case err == nil:
			la.has[c.name] = true
			if strings.HasPrefix(frag, "collectors:\n") {
				collectorsYAML.WriteString(strings.TrimPrefix(frag, "collectors:\n"))
			} else {
				sectionsYAML.WriteString(frag)
			}
		case strings.Contains(string(out), "unknown collector") || strings.Contains(string(out), "unknown section"):
			la.missing = append(la.missing, c.name)
		default:
			t.Fatalf("config for %s rejected: %v\n%s", c.name, err, out)
		}
	}
	cfg += collectorsYAML.String() + sectionsYAML.String()
	cfgFile := filepath.Join(dir, "vigil.yaml")
	writeFile(t, cfgFile, cfg)
	t.Logf("agent configuration:\n%s", cfg)

	la.startWorkload(t)

	logf, err := os.Create(filepath.Join(dir, "vigil.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfgFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("agent log (tail):\n%s", tail(string(b), 60))
		}
	})
	testenv.EventuallyTrue(t, 2*time.Minute, "agent serves /metrics", func() bool {
		select {
		case err := <-done:
			done <- err
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("agent exited: %v\n%s", err, tail(string(b), 40))
		default:
		}
		_, err := la.scrape()
		return err == nil
	})
	return la
}

// scrape returns the names of the series the agent's /metrics exposes
// (histograms as their _bucket, _sum and _count series).
func (la *liveAgent) scrape() (map[string]bool, error) {
	resp, err := http.Get("http://" + la.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for name, f := range fams {
		if len(f.GetMetric()) == 0 {
			continue
		}
		switch f.GetType().String() {
		case "HISTOGRAM":
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case "SUMMARY":
			names[name], names[name+"_sum"], names[name+"_count"] = true, true, true
		default:
			names[name] = true
		}
	}
	return names, nil
}

// startWorkload runs the test binary as a workload in its own cgroup:
// CPU load, an HTTP server and client (some 5xx), TCP connects (some
// refused, some timing out with a SYN retransmit), short-lived processes
// (exits with 0 and 1), CRI log lines for a pod, a Redis and a
// PostgreSQL client (some errors of their own, some of the server's), and
// DNS lookups (answered, NXDOMAIN, REFUSED, unanswered). It also OOM-kills a
// process in a second cgroup. The workload runs until the test ends.
func (la *liveAgent) startWorkload(t *testing.T) {
	t.Helper()
	cg := makeCgroup(t, unitName, 512<<20)
	podDir := filepath.Join(la.dir, "pods", podNamespace+"_"+podName+"_6f1c3b9e-2d4a-4c55-9a1e-0b7d3c2e8f10", "app")
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := inCgroups(ctx, cg, exe, "-test.run=^$")
	la.podLog = filepath.Join(podDir, "0.log")
	cmd.Env = append(cmd.Env, helperEnv+"=workload", "VIGIL_DASHBOARDS_LOG="+la.podLog,
		"VIGIL_DASHBOARDS_REDIS="+la.redisAddr, "VIGIL_DASHBOARDS_POSTGRES="+la.postgresDSN,
		"VIGIL_DASHBOARDS_DNS="+la.dnsAddr, "VIGIL_DASHBOARDS_DNS_SILENT="+la.silentDNSAddr)
	out, err := os.Create(filepath.Join(la.dir, "workload.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		out.Close()
	})
	// A process OOM-killed in a 32 MiB cgroup (once the agent runs: the
	// test calls oomKill after startLiveAgent).
	la.oomCgroup = makeCgroup(t, oomUnit, 32<<20)
}

// oomKill makes the kernel OOM-kill a process in the OOM cgroup.
func (la *liveAgent) oomKill(t *testing.T) {
	t.Helper()
	cmd := inCgroups(context.Background(), la.oomCgroup, "tail", "/dev/zero")
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("tail /dev/zero in a 32 MiB cgroup: want SIGKILL by the OOM killer, got %v", err)
	}
}

// cgroupSet is one cgroup's folder in each v1 controller the agent reads
// (or the one v2 folder).
type cgroupSet []string

// makeCgroup makes system.slice/<name> in the memory, cpu and cpuacct
// hierarchies (v1) or in the unified one, with a memory limit, and removes
// it at cleanup.
func makeCgroup(t *testing.T, name string, limit int64) cgroupSet {
	t.Helper()
	var set cgroupSet
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir := filepath.Join("/sys/fs/cgroup/system.slice", name)
		mkdirCgroup(t, dir)
		writeFile(t, filepath.Join(dir, "memory.max"), fmt.Sprint(limit))
		return cgroupSet{dir}
	}
	seen := map[string]bool{}
	for _, c := range []string{"memory", "cpu", "cpuacct"} {
		root, err := filepath.EvalSymlinks(filepath.Join("/sys/fs/cgroup", c))
		if err != nil {
			t.Fatalf("no v1 %s hierarchy: %v", c, err)
		}
		if seen[root] {
			continue
		}
		seen[root] = true
		dir := filepath.Join(root, "system.slice", name)
		mkdirCgroup(t, dir)
		if c == "memory" {
			writeFile(t, filepath.Join(dir, "memory.limit_in_bytes"), fmt.Sprint(limit))
		}
		set = append(set, dir)
	}
	return set
}

func mkdirCgroup(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; ; i++ {
			err := os.Remove(dir)
			if err == nil || os.IsNotExist(err) {
				return
			}
			if i == 200 {
				t.Errorf("remove cgroup %s: %v", dir, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// inCgroups runs argv with its process in every folder of set.
func inCgroups(ctx context.Context, set cgroupSet, argv ...string) *exec.Cmd {
	script := `for d in $VIGIL_CGROUPS; do echo $$ > "$d/cgroup.procs" || exit 97; done; exec "$@"`
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", script, "sh"}, argv...)...)
	cmd.Env = append(os.Environ(), "VIGIL_CGROUPS="+strings.Join(set, " "))
	return cmd
}

// helperEnv selects a helper mode of the test binary (see TestMain).
const helperEnv = "VIGIL_DASHBOARDS_HELPER"

// runWorkload is the workload's main loop; it returns on SIGTERM.
func runWorkload() error {
	logPath := os.Getenv("VIGIL_DASHBOARDS_LOG")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	refused, err := closedPort()
	if err != nil {
		return err
	}
	full, closeFull, err := fullListener()
	if err != nil {
		return err
	}
	defer closeFull()

	stop := make(chan os.Signal, 1)
	signalNotify(stop)
	// CPU load on one core, half of the time.
	go func() {
		for {
			end := time.Now().Add(50 * time.Millisecond)
			for time.Now().Before(end) {
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	ballast := make([]byte, 64<<20) // working set
	for i := range ballast {
		ballast[i] = byte(i)
	}
	db, err := newDBClients(os.Getenv("VIGIL_DASHBOARDS_REDIS"), os.Getenv("VIGIL_DASHBOARDS_POSTGRES"))
	if err != nil {
		return err
	}
	defer db.close()
	dns, silentDNS := goResolver(os.Getenv("VIGIL_DASHBOARDS_DNS")), goResolver(os.Getenv("VIGIL_DASHBOARDS_DNS_SILENT"))
	grpcAddr, stopGRPC, err := grpcServer()
	if err != nil {
		return err
	}
	defer stopGRPC()
	cl := &http.Client{Timeout: 10 * time.Second}
	lastSlow := time.Time{}
	levels := []string{"info", "info", "warn", "error"}
	for i := 0; ; i++ {
		select {
		case <-stop:
			runtime.KeepAlive(ballast)
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		for _, p := range []string{"/ok", "/ok", "/ok", "/fail"} {
			resp, err := cl.Get("http://" + ln.Addr().String() + p)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		cl.CloseIdleConnections() // a new connection each round: connects and accepts
		if c, err := net.Dial("tcp4", refused); err == nil {
			c.Close()
		}
		if time.Since(lastSlow) > 5*time.Second {
			lastSlow = time.Now()
			go dialWithOneRetransmit(full)
		}
		_ = exec.Command("/bin/true").Run()
		_ = exec.Command("/bin/false").Run()
		db.round()
		if i%5 == 0 {
			lookups(dns, silentDNS)
			grpcCalls(grpcAddr)
		}
		lvl := levels[i%len(levels)]
		msg := "request served"
		if lvl == "error" {
			msg = "upstream timeout after 5s"
		}
		fmt.Fprintf(logf, "%s stdout F level=%s msg=%q n=%d\n", time.Now().UTC().Format(time.RFC3339Nano), lvl, msg, i)
		if _, err := os.Stat(logPath + ".trigger"); err == nil {
			fmt.Fprintf(logf, "%s stdout F level=warn msg=%q\n", time.Now().UTC().Format(time.RFC3339Nano), vetoTrigger)
		}
	}
}

// dbClients are the workload's Redis and PostgreSQL clients (go-redis and
// pgx, as applications use them).
type dbClients struct {
	redis *redis.Client
	pg    *pgx.Conn
}

// newDBClients connects to Redis and PostgreSQL and sets them up so that
// some requests fail: a list key read as a string (WRONGTYPE, the
// caller's mistake), a Redis at its maxmemory (OOM on writes, the
// server's), and queries cancelled by a 20 ms statement_timeout (SQLSTATE
// class 57, the server's).
func newDBClients(redisAddr, pgDSN string) (*dbClients, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, MaxRetries: -1})
	if err := rdb.RPush(ctx, "vigil-list", "a").Err(); err != nil {
		return nil, fmt.Errorf("redis RPUSH: %w", err)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		return nil, fmt.Errorf("redis CONFIG SET maxmemory: %w", err)
	}
	pg, err := pgx.Connect(ctx, pgDSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if _, err := pg.Exec(ctx, "SET statement_timeout = 20"); err != nil {
		return nil, fmt.Errorf("postgres SET statement_timeout: %w", err)
	}
	return &dbClients{redis: rdb, pg: pg}, nil
}

// round sends each client's requests once; their errors are the point.
func (d *dbClients) round() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = d.redis.Get(ctx, "vigil-key").Err()           // nil: no error
	_ = d.redis.Get(ctx, "vigil-list").Err()          // WRONGTYPE
	_ = d.redis.Set(ctx, "vigil-key", "v", 0).Err()   // OOM
	_, _ = d.pg.Exec(ctx, "SELECT 1")                 // no error
	_, _ = d.pg.Exec(ctx, "SELECT * FROM vigil_none") // 42 (no such table)
	_, _ = d.pg.Exec(ctx, "SELECT pg_sleep(1)")       // 57 (statement_timeout)
}

func (d *dbClients) close() {
	_ = d.redis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.pg.Close(ctx)
}

// goResolver is Go's own resolver asking only the DNS server at addr,
// over UDP.
func goResolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// lookups asks dns for a name of its zone (A and AAAA, NOERROR), a name
// the zone does not have (NXDOMAIN) and one outside it (REFUSED: the
// server is not a resolver), and silent for a name it never answers (the
// agent counts a timeout after its dns_timeout).
func lookups(dns, silent *net.Resolver) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range []string{"www." + testenv.DNSZone, "nope." + testenv.DNSZone, "example.org."} {
		_, _ = dns.LookupHost(ctx, name)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer scancel()
	_, _ = silent.LookupIPAddr(sctx, "www."+testenv.DNSZone)
}

// grpcServer serves grpc-go's health service and, for any other method,
// UNAVAILABLE (a failing dependency), in clear text on loopback.
func grpcServer() (string, func(), error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unavailable, "down")
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), srv.Stop, nil
}

// grpcCalls makes two health checks (OK) and one call answered UNAVAILABLE
// on a new connection: one opened before the agent attached its programs
// is not followed (docs/ebpf.md, HTTP/2 and gRPC).
func grpcCalls(addr string) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	for range 2 {
		_, _ = hc.Check(ctx, &healthpb.HealthCheckRequest{})
	}
	_ = cc.Invoke(ctx, "/shop.Stock/Get", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
}

// closedPort returns an address nothing listens on (connects are refused).
func closedPort() (string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// fullListener returns a listener whose accept queue is full, so a new
// connect's SYN is dropped and retransmitted.
func fullListener() (string, func(), error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return "", nil, err
	}
	if err := unix.Listen(fd, 0); err != nil {
		return "", nil, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	filler, err := net.Dial("tcp4", addr)
	if err != nil {
		return "", nil, err
	}
	return addr, func() { filler.Close(); unix.Close(fd) }, nil
}

// dialWithOneRetransmit connects with one SYN retry; the kernel gives up
// with ETIMEDOUT after the retransmit.
func dialWithOneRetransmit(addr string) {
	d := net.Dialer{Timeout: time.Minute, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1) })
		return errors.Join(err, serr)
	}}
	if c, err := d.Dial("tcp4", addr); err == nil {
		c.Close()
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
