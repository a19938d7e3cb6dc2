//go:build linux

package ebpf

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// TestRingGap makes the HTTP ring lose records (a 4 KiB ring and a burst
// of Redis commands on several connections) and checks that no reply is
// credited to the wrong command: each connection alternates PING, which
// always succeeds, with LPUSH on a string key, which always fails with
// WRONGTYPE, so a queue shifted by a lost request or reply would count a
// PING failed or an LPUSH succeeded. The reader must see the loss
// (vigil_ebpf_ring_gaps_total) and, once the ring keeps up again, pair a
// slow batch on the same connections exactly.
func TestRingGap(t *testing.T) { forEachHTTPHook(t, testRingGap) }

func testRingGap(t *testing.T, hook string) {
	srv := testenv.StartRedis(t)
	cfg := spansConfig(hook)
	cfg.HTTPRingBufferBytes = 4096
	env := startCollector(t, cfg)
	requireHTTPHook(t, env, hook)

	const conns, pairs, slow = 4, 3000, 10
	type client struct {
		c net.Conn
		r *bufio.Reader
	}
	cls := make([]client, conns)
	for i := range cls {
		c, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cls[i] = client{c, bufio.NewReader(c)}
	}
	// do sends one command and reads its one-line reply.
	do := func(cl client, want string, args ...string) error {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := cl.c.Write([]byte(b.String())); err != nil {
			return err
		}
		line, err := cl.r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, want) {
			return fmt.Errorf("%v: reply %q, want %q", args, line, want)
		}
		return nil
	}
	if err := do(cls[0], "+OK", "SET", "gapkey", "v"); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for _, cl := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range pairs {
				if err := do(cl, "+PONG", "PING"); err != nil {
					errs <- err
					return
				}
				if err := do(cl, "-WRONGTYPE", "LPUSH", "gapkey", "x"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	lost := func() float64 { return env.value(t, "vigil_ebpf_events_lost_total", nil) }
	testenv.EventuallyTrue(t, 10*time.Second, "records lost from the 4 KiB ring", func() bool { return lost() > 0 })
	time.Sleep(200 * time.Millisecond) // the reader catches up
	lostBefore := lost()

	// The slow batch, on the same connections: EXISTS (always 1) and HGET
	// on the string key (always WRONGTYPE), one at a time.
	for range slow {
		for _, cl := range cls {
			if err := do(cl, ":1", "EXISTS", "gapkey"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
			if err := do(cl, "-WRONGTYPE", "HGET", "gapkey", "f"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if l := lost(); l != lostBefore {
		t.Fatalf("records were lost during the slow batch too (%v, then %v): the test cannot tell", lostBefore, l)
	}
	// Client and server side each see every command of the slow batch.
	want := float64(2 * conns * slow)
	// count sums the series of cmd with error errClass ("": any).
	count := func(cmd, errClass string) float64 {
		l := map[string]string{"command": cmd}
		if errClass != "" {
			l["error"] = errClass
		}
		return env.value(t, "vigil_redis_requests_total", l)
	}
	defer func() {
		if t.Failed() {
			t.Logf("EXISTS %v HGET %v PING %v LPUSH %v all %v gaps %v", count("EXISTS", "none"), count("HGET", "WRONGTYPE"), count("PING", "none"), count("LPUSH", "WRONGTYPE"), env.value(t, "vigil_redis_requests_total", nil), env.value(t, "vigil_ebpf_ring_gaps_total", nil))
		}
	}()
	testenv.EventuallyTrue(t, 30*time.Second, "the slow batch counted", func() bool {
		return count("EXISTS", "") >= want && count("HGET", "") >= want
	})
	time.Sleep(300 * time.Millisecond)

	if n := env.value(t, "vigil_ebpf_ring_gaps_total", map[string]string{"ring": "http"}); n <= 0 {
		t.Errorf("vigil_ebpf_ring_gaps_total{ring=\"http\"} = %v after %v records were lost, want > 0", n, lostBefore)
	}
	for _, c := range []struct {
		cmd, errClass string
		want          float64 // -1: any number
	}{
		{"EXISTS", "none", want},
		{"HGET", "WRONGTYPE", want},
		{"PING", "none", -1},
		{"LPUSH", "WRONGTYPE", -1},
	} {
		total := count(c.cmd, "")
		right := count(c.cmd, c.errClass)
		t.Logf("%s: %v with error=%s, %v in all", c.cmd, right, c.errClass, total)
		if total != right {
			t.Errorf("%s: %v counted with another error than %s (credited a reply of another command)", c.cmd, total-right, c.errClass)
		}
		if c.want >= 0 && right != c.want {
			t.Errorf("%s error=%s: %v, want exactly %v", c.cmd, c.errClass, right, c.want)
		}
	}
	t.Logf("records lost: %v, gaps seen: %v, unmatched: %v", lostBefore, env.value(t, "vigil_ebpf_ring_gaps_total", nil),
		env.value(t, "vigil_ebpf_protocol_unmatched_total", map[string]string{"protocol": "redis"}))
}
