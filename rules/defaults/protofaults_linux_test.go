package defaults_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// dependencyByProtocolAlerts are the default alerts on a workload's Redis,
// PostgreSQL and DNS calls (workload.rules.yml).
var dependencyByProtocolAlerts = []string{
	"VigilWorkloadRedisErrors", "VigilWorkloadRedisSlow",
	"VigilWorkloadPostgresErrors", "VigilWorkloadPostgresSlow",
	"VigilWorkloadDNSFailures",
}

// TestDependencyAlertsByProtocolOnRealFaults runs the real agent (go build
// ./cmd/vigil) with its default rules beside services that are clients of
// real servers (Debian's redis-server, PostgreSQL 15 and NSD, started by
// the test), with go-redis, pgx and Go's resolver, and waits for the
// dependency alerts by protocol to fire from what the eBPF collector reads:
//
//   - a Redis at maxmemory answering OOM to half the commands:
//     VigilWorkloadRedisErrors;
//   - a Redis whose every command (a Lua script) takes 200 ms:
//     VigilWorkloadRedisSlow;
//   - a PostgreSQL cancelling half the queries (statement_timeout, class
//     57): VigilWorkloadPostgresErrors;
//   - queries taking 1.2 s: VigilWorkloadPostgresSlow;
//   - a DNS server refusing the lookups (a name outside its zone):
//     VigilWorkloadDNSFailures;
//
// and that services failing by their own doing — Redis WRONGTYPE,
// PostgreSQL's missing table — or getting NXDOMAIN for most of their
// lookups raise none of them at any time.
func TestDependencyAlertsByProtocolOnRealFaults(t *testing.T) {
	testenv.RequireRoot(t, "creating cgroups and loading the agent's eBPF programs")
	if testing.Short() {
		t.Skip("-short: builds and runs the agent for minutes")
	}
	rdsErr, rdsSlow := testenv.StartRedis(t), testenv.StartRedis(t)
	pg := testenv.StartPostgres(t)
	dns := testenv.StartDNS(t)
	// The OOM Redis: a list key (read as a string: WRONGTYPE), then a
	// memory limit every write is over.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: rdsErr.Addr})
	if err := rc.RPush(ctx, "vigil-list", "a").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	rc.Close()

	tag := fmt.Sprintf("%08x", rand.Uint32())
	cg := newCgroups(t, "/vigil-proto-"+tag+"/system.slice")
	unit := func(kind string) string { return "vigil-proto-" + kind + "-" + tag + ".service" }
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(cfg, []byte(`server:
  listen_address: "`+addr+`"
collectors:
  host: {enabled: true}
  cgroup: {enabled: true}
  ebpf: {enabled: true, dns_ports: [`+strconv.Itoa(dns.Port)+`]}
  logs: {enabled: false}
  kube: {enabled: false}
rules:
  evaluation_interval: 1s
  storage_dir: `+filepath.Join(dir, "tsdb")+`
`), 0o644); err != nil {
		t.Fatal(err)
	}
	startAgent(t, cfg, filepath.Join(dir, "vigil.log"))
	// The clients start once the agent's programs are in. A Redis
	// connection already busy when they attach is timed late for good:
	// in this test's first runs the clients started before the agent had
	// a mean of 62 ms per command against 2 ms for the same clients
	// started after (commands and errors still right), enough for
	// VigilWorkloadRedisSlow on the WRONGTYPE client. That is the eBPF
	// collector's pairing, not these rules' (most likely a reply missed at
	// attach leaves its request queued, and each later reply is timed
	// from a request one loop older than its own).
	waitEBPFLoaded(t, "http://"+addr)
	for kind, target := range map[string]string{
		"redisoom": rdsErr.Addr, "redisslow": rdsSlow.Addr, "redisbug": rdsErr.Addr,
		"pgtimeout": pg.DSN(), "pgslow": pg.DSN(), "pgbug": pg.DSN(),
		"dnsrefused": dns.Addr, "dnsnxdomain": dns.Addr,
	} {
		cg.run(unit(kind), 128<<20, 0, exe, helperEnv+"=proto:"+kind+":"+target)
	}

	want := map[string]string{
		"VigilWorkloadRedisErrors":    unit("redisoom"),
		"VigilWorkloadRedisSlow":      unit("redisslow"),
		"VigilWorkloadPostgresErrors": unit("pgtimeout"),
		"VigilWorkloadPostgresSlow":   unit("pgslow"),
		"VigilWorkloadDNSFailures":    unit("dnsrefused"),
	}
	start := time.Now()
	seen := map[string]time.Duration{}
	wrong := map[string]bool{}
	var done time.Time
	testenv.Eventually(t, 6*time.Minute, 2*time.Second, "the dependency alerts by protocol firing", func(ctx context.Context) error {
		alerts, err := firing(ctx, "http://"+addr)
		if err != nil {
			return err
		}
		for _, a := range alerts {
			name, u := a.Labels["alertname"], a.Labels["unit"]
			if !strings.Contains(u, tag) || !slices.Contains(dependencyByProtocolAlerts, name) {
				continue
			}
			if want[name] != u {
				// A caller's own mistakes, NXDOMAIN answers, or the
				// other protocol's fault: none of these alerts.
				wrong[name+" on "+u+" ("+a.State+"): "+a.Annotations["description"]] = true
				continue
			}
			if _, ok := seen[name]; !ok && a.State == "firing" {
				seen[name] = time.Since(start).Round(time.Second)
			}
		}
		if len(seen) < len(want) {
			return fmt.Errorf("firing so far: %v", seen)
		}
		// Then 30 s more: the services that must not alert have had as
		// long as the slowest that must.
		if done.IsZero() {
			done = time.Now()
		}
		if time.Since(done) < 30*time.Second {
			return fmt.Errorf("all firing (%v); watching the others 30 s more", seen)
		}
		return nil
	})
	var ws []string
	for w := range wrong {
		ws = append(ws, w)
	}
	sort.Strings(ws)
	for _, w := range ws {
		t.Errorf("alert for a service that must not raise it: %s", w)
	}
	t.Logf("firing after (from agent start, for: included): %v", seen)
}

// protoFault is one client of the protocol test, forever: kind names what
// it does against target (a Redis address, a PostgreSQL DSN or a DNS
// server's address).
func protoFault(kind, target string) int {
	ctx := context.Background()
	// The agent learns of this process's new cgroup from its mkdir event;
	// a connection keeps the identity of its first request (docs/ebpf.md).
	time.Sleep(time.Second)
	switch kind {
	case "redisoom", "redisslow", "redisbug":
		c := redis.NewClient(&redis.Options{Addr: target, MaxRetries: -1})
		// The Lua script spins for 200 ms: the server answers nothing
		// else meanwhile, as one blocked by a slow command does.
		const spin = `local s = redis.call('TIME') while true do local n = redis.call('TIME') if (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 200000 then return 1 end end`
		for {
			switch kind {
			case "redisoom":
				_ = c.Get(ctx, "vigil-key").Err()         // none (nil)
				_ = c.Set(ctx, "vigil-key", "v", 0).Err() // OOM
			case "redisslow":
				_ = c.Eval(ctx, spin, nil).Err()
			case "redisbug":
				_ = c.Get(ctx, "vigil-key").Err()  // none (nil)
				_ = c.Get(ctx, "vigil-list").Err() // WRONGTYPE
			}
			time.Sleep(50 * time.Millisecond)
		}
	case "pgtimeout", "pgslow", "pgbug":
		conn, err := pgx.Connect(ctx, target)
		if err != nil {
			fmt.Fprintln(os.Stderr, "proto:", kind, err)
			return 1
		}
		if kind == "pgtimeout" {
			if _, err := conn.Exec(ctx, "SET statement_timeout = 20"); err != nil {
				fmt.Fprintln(os.Stderr, "proto:", kind, err)
				return 1
			}
		}
		for {
			switch kind {
			case "pgtimeout":
				_, _ = conn.Exec(ctx, "SELECT 1")
				_, _ = conn.Exec(ctx, "SELECT pg_sleep(1)") // 57014, after 20 ms
			case "pgslow":
				_, _ = conn.Exec(ctx, "SELECT pg_sleep(1.2)")
			case "pgbug":
				_, _ = conn.Exec(ctx, "SELECT 1")
				_, _ = conn.Exec(ctx, "SELECT * FROM vigil_no_such_table") // 42P01
			}
			time.Sleep(50 * time.Millisecond)
		}
	case "dnsrefused", "dnsnxdomain":
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", target)
		}}
		// dnsnxdomain walks a search list as a pod's resolver does: three
		// names that do not exist before the one that does.
		names := []string{"example.org."}
		if kind == "dnsnxdomain" {
			names = []string{"www.ns.svc." + testenv.DNSZone, "www.svc." + testenv.DNSZone, "www.cluster." + testenv.DNSZone, "www." + testenv.DNSZone}
		}
		for {
			for _, n := range names {
				lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, _ = r.LookupHost(lctx, n)
				cancel()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return 2
}
