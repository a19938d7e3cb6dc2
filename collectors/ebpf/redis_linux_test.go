//go:build linux

package ebpf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/vigil-agent/vigil/collectors/ebpf/redisproto"
	"github.com/vigil-agent/vigil/internal/testenv"
)

// TestRedis runs Debian's redis-server with its redis-cli and the go-redis
// client (RESP2 and RESP3, a pipeline, errors), each client in a cgroup of
// its own, and checks the client and server counts exactly against what
// they sent.
func TestRedis(t *testing.T) { forEachHTTPHook(t, testRedis) }

func testRedis(t *testing.T, hook string) {
	srv := testenv.StartRedis(t) // before the collector: its readiness PINGs are not counted
	cli := testenv.Binary(t, "redis-cli")
	env := startCollector(t, spansConfig(hook))
	requireHTTPHook(t, env, hook)
	own := serverInCgroup(t, env, srv.Process, "vigil-ebpf-test-redis-server.service")
	cliPort := strconv.Itoa(srv.Port)

	// redis-cli, one connection per invocation: RESP2, and RESP3 (-3, which
	// sends HELLO 3 first).
	const cliUnit = "vigil-ebpf-test-redis-cli.service"
	cliCg := testCgroup(t, cliUnit)
	env.knownCgroup(t, cliCg)
	for _, args := range [][]string{
		{"SET", "greeting", "hello"},
		{"GET", "greeting"},
		{"-3", "GET", "greeting"},
		{"-3", "HGETALL", "nothing"},
		{"LPUSH", "greeting", "x"}, // WRONGTYPE
		{"NOSUCHCOMMAND", "x"},     // ERR unknown command
		{"-r", "3", "INCR", "visits"},
	} {
		cmd := inCgroup(cliCg, append([]string{cli, "-h", "127.0.0.1", "-p", cliPort}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		t.Logf("redis-cli %v: %s", args, strings.TrimSpace(string(out)))
	}

	const goUnit = "vigil-ebpf-test-redis-go.service"
	goCg := testCgroup(t, goUnit)
	env.knownCgroup(t, goCg)
	if out, err := helperCmd(t, goCg, "redis-go-client", srv.Addr).CombinedOutput(); err != nil {
		t.Fatalf("go-redis client: %v\n%s", err, out)
	}

	stats := redisStats(t, srv.Addr)
	type series map[string]string
	// Both sides name the address the clients dialled (127.0.0.1:port):
	// the server's on the client side, the listening one on the server's.
	dest := "127.0.0.1:" + cliPort
	// The server side: redis-server's unit (serverInCgroup).
	onServer := func(l series) series {
		l["kind"] = "server"
		l["destination"] = dest
		for k, v := range own {
			l[k] = v
		}
		return l
	}
	client := func(unit, cmd, code string) series {
		return series{"unit": unit, "kind": "client", "destination": dest, "command": cmd, "error": code}
	}
	checks := []struct {
		labels series
		want   float64
	}{
		{client(cliUnit, "SET", "none"), 1},
		{client(cliUnit, "GET", "none"), 2},
		{client(cliUnit, "HELLO", "none"), 2},
		{client(cliUnit, "HGETALL", "none"), 1},
		{client(cliUnit, "LPUSH", "WRONGTYPE"), 1},
		{client(cliUnit, "other", "ERR"), 1},
		{client(cliUnit, "INCR", "none"), 3},
		{client(goUnit, "SET", "none"), 2},
		{client(goUnit, "GET", "none"), 4},
		{client(goUnit, "HGET", "WRONGTYPE"), 1},
		{client(goUnit, "DEL", "none"), 1},
		{client(goUnit, "INCR", "none"), 10},
		// go-redis says HELLO 3 on each connection it opens (the
		// server's own statistics below tell how many).
		{client(goUnit, "HELLO", "none"), stats.calls["HELLO"] - 2},
		// The server side: both clients' commands, as the server counts
		// them itself.
		{onServer(series{"command": "SET", "error": "none"}), 3},
		{onServer(series{"command": "GET", "error": "none"}), 6},
		{onServer(series{"command": "LPUSH", "error": "WRONGTYPE"}), 1},
		{onServer(series{"command": "HGET", "error": "WRONGTYPE"}), 1},
		{onServer(series{"command": "other", "error": "ERR"}), 1},
		{onServer(series{"command": "INCR", "error": "none"}), 13},
		{onServer(series{"command": "DEL", "error": "none"}), 1},
	}
	for _, c := range checks {
		testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("vigil_redis_requests_total%v", c.labels), func() bool {
			return env.value(t, "vigil_redis_requests_total", c.labels) >= c.want
		})
	}
	time.Sleep(200 * time.Millisecond) // anything counted twice would show now
	for _, c := range checks {
		if got := env.value(t, "vigil_redis_requests_total", c.labels); got != c.want {
			t.Errorf("vigil_redis_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
		if got := env.value(t, "vigil_redis_request_duration_seconds", c.labels); got != c.want {
			t.Errorf("vigil_redis_request_duration_seconds_count%v = %v, want %v", c.labels, got, c.want)
		}
	}
	// No command of these clients went without the server's address.
	for _, unit := range []string{cliUnit, goUnit} {
		all := env.value(t, "vigil_redis_requests_total", series{"unit": unit})
		if got := env.value(t, "vigil_redis_requests_total", series{"unit": unit, "destination": dest}); got != all || all == 0 {
			t.Errorf("vigil_redis_requests_total{unit=%q,destination=%q} = %v, want all %v of the unit's", unit, dest, got, all)
		}
	}
	// Every command the server executed, and every error it answered,
	// is counted once on the server side (INFO, the statistics' own
	// command, runs after them).
	for cmd, n := range stats.calls {
		if cmd == "INFO" || cmd == "PING" {
			continue // the statistics' own command; the readiness check's PING, before the collector started
		}
		l := onServer(series{"kind": "server", "command": cmd})
		if redisproto.Command([]byte(cmd)) == 0 {
			l["command"] = "other"
		}
		if got := env.value(t, "vigil_redis_requests_total", l); got != n {
			t.Errorf("vigil_redis_requests_total%v = %v, want %v (the server's commandstats)", l, got, n)
		}
	}
	for code, n := range stats.errors {
		l := onServer(series{"kind": "server", "error": code})
		if got := env.value(t, "vigil_redis_requests_total", l); got != n {
			t.Errorf("vigil_redis_requests_total%v = %v, want %v (the server's errorstats)", l, got, n)
		}
	}
	// Spans: every command is sampled here (ratio 1, no rate cap), errors
	// always; both sides, named by the command.
	port := int64(srv.Port)
	dbSpans := func(kind ptrace.SpanKind, op string) []ptrace.Span {
		return env.findSpans(func(s ptrace.Span) bool {
			sys, ok1 := s.Attributes().Get("db.system.name")
			p, ok2 := s.Attributes().Get("server.port")
			return ok1 && ok2 && s.Kind() == kind && sys.Str() == "redis" && s.Name() == op && p.Int() == port
		})
	}
	for _, kind := range []ptrace.SpanKind{ptrace.SpanKindClient, ptrace.SpanKindServer} {
		testenv.EventuallyTrue(t, 30*time.Second, "Redis INCR spans", func() bool { return len(dbSpans(kind, "INCR")) >= 13 })
		if n := len(dbSpans(kind, "INCR")); n != 13 {
			t.Errorf("%s INCR spans: %d, want 13", kind, n)
		}
		failed := dbSpans(kind, "HGET")
		if len(failed) != 1 || strAttr(failed[0], "error.type") != "WRONGTYPE" || failed[0].Status().Code() != ptrace.StatusCodeError ||
			strAttr(failed[0], "db.operation.name") != "HGET" || failed[0].EndTimestamp() < failed[0].StartTimestamp() {
			t.Errorf("%s HGET spans: %d, want one WRONGTYPE error", kind, len(failed))
		}
	}
	t.Logf("rejected: malformed %v, unexpected %v; unmatched %v",
		env.value(t, "vigil_ebpf_protocol_rejected_total", map[string]string{"protocol": "redis", "reason": "malformed"}),
		env.value(t, "vigil_ebpf_protocol_rejected_total", map[string]string{"protocol": "redis", "reason": "unexpected"}),
		env.value(t, "vigil_ebpf_protocol_unmatched_total", map[string]string{"protocol": "redis"}))
}

// redisGoClient sends TestRedis's commands with go-redis (RESP3, its
// default) to the server at arg over one connection.
func redisGoClient(arg string) error {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: arg, PoolSize: 1, DisableIdentity: true})
	defer c.Close()
	if err := c.Set(ctx, "k1", "v1", 0).Err(); err != nil {
		return err
	}
	if err := c.Set(ctx, "k2", strings.Repeat("x", 2000), 0).Err(); err != nil { // a value past the captured window
		return err
	}
	for _, k := range []string{"k1", "k2", "k1"} {
		if err := c.Get(ctx, k).Err(); err != nil {
			return err
		}
	}
	if err := c.HGet(ctx, "k1", "f").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		return fmt.Errorf("HGET on a string: want WRONGTYPE, got %v", err)
	}
	if err := c.Del(ctx, "k2").Err(); err != nil {
		return err
	}
	// Ten commands in one write, their replies in one read.
	pipe := c.Pipeline()
	for range 10 {
		pipe.Incr(ctx, "pipelined")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if n, err := c.Get(ctx, "pipelined").Int(); err != nil || n != 10 {
		return errors.Join(err, fmt.Errorf("pipelined = %d, want 10", n))
	}
	return nil
}

// redisServerStats is what a Redis server counted itself: commands run
// (INFO commandstats: calls, which include failed calls, plus calls
// rejected before running) and errors answered by code (INFO errorstats).
type redisServerStats struct {
	calls  map[string]float64
	errors map[string]float64
}

func redisStats(t *testing.T, addr string) redisServerStats {
	t.Helper()
	// A bare connection: a client library would say HELLO first.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("*3\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n$10\r\nerrorstats\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		t.Fatalf("INFO: %q, %v", head, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	st := redisServerStats{calls: map[string]float64{}, errors: map[string]float64{}}
	for _, line := range strings.Split(string(body), "\r\n") {
		name, fields, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kv := map[string]float64{}
		for _, f := range strings.Split(fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			kv[k], _ = strconv.ParseFloat(v, 64)
		}
		switch {
		case strings.HasPrefix(name, "cmdstat_"):
			st.calls[strings.ToUpper(strings.TrimPrefix(name, "cmdstat_"))] = kv["calls"] + kv["rejected_calls"]
		case strings.HasPrefix(name, "errorstat_"):
			st.errors[strings.TrimPrefix(name, "errorstat_")] = kv["count"]
		}
	}
	t.Logf("redis-server's statistics: %v", st)
	return st
}
