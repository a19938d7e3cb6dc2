//go:build linux

package ebpf

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// fullListener listens on loopback with a backlog of 0 and fills its
// accept queue with one connection it never accepts, so that the kernel
// drops every further SYN: connects to it time out, without any traffic
// leaving the machine.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	filler, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	return addr
}

func TestTCPLifecycle(t *testing.T) {
	env := startCollector(t, nil)

	// A server that accepts, reads until EOF or reset, and closes.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	okAddr := ln.Addr().String()

	closed, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := closed.Addr().String()
	closed.Close()
	timeoutAddr := fullListener(t)

	const unit = "vigil-ebpf-test-tcp.service"
	cg := testCgroup(t, unit)
	cmd := helperCmd(t, cg, "tcp-client", strings.Join([]string{okAddr, refusedAddr, timeoutAddr, okAddr}, ","))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tcp client: %v\n%s", err, out)
	}

	client := func(dest string, kv ...string) map[string]string {
		l := map[string]string{"unit": unit, "destination": dest}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	checks := []struct {
		metric string
		labels map[string]string
		min    float64
	}{
		// 3 successful connects and the one that is reset later.
		{"vigil_tcp_connect_attempts_total", client(okAddr), 4},
		{"vigil_tcp_connect_duration_seconds", client(okAddr), 4},
		{"vigil_tcp_connection_duration_seconds", client(okAddr, "direction", "outbound"), 4},
		{"vigil_tcp_connect_attempts_total", client(refusedAddr), 1},
		{"vigil_tcp_connect_failures_total", client(refusedAddr, "reason", "refused"), 1},
		{"vigil_tcp_resets_total", client(refusedAddr, "side", "received"), 1},
		{"vigil_tcp_connect_failures_total", client(timeoutAddr, "reason", "timeout"), 1},
		{"vigil_tcp_retransmits_total", client(timeoutAddr, "direction", "outbound"), 1},
		{"vigil_tcp_resets_total", client(okAddr, "side", "sent", "direction", "outbound"), 1},
		// The server side, attributed to this test process's listener.
		{"vigil_tcp_accepts_total", map[string]string{"destination": okAddr}, 4},
		{"vigil_tcp_resets_total", map[string]string{"destination": okAddr, "side": "received", "direction": "inbound"}, 1},
	}
	for _, c := range checks {
		testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("%s%v >= %v", c.metric, c.labels, c.min), func() bool {
			return env.value(t, c.metric, c.labels) >= c.min
		})
	}
	// Every connection the client opened is closed again, on both sides:
	// the server's closes (through TIME_WAIT, whose socket took the local
	// port) name the listening address as its accepts did.
	testenv.EventuallyTrue(t, 30*time.Second, "no active outbound connections", func() bool {
		return env.value(t, "vigil_tcp_active_connections", client(okAddr, "direction", "outbound")) == 0
	})
	inbound := map[string]string{"destination": okAddr, "direction": "inbound"}
	testenv.EventuallyTrue(t, 30*time.Second, "the 4 inbound connections closed", func() bool {
		return env.value(t, "vigil_tcp_connection_duration_seconds", inbound) >= 4
	})
	if v := env.value(t, "vigil_tcp_active_connections", inbound); v != 0 {
		t.Errorf("vigil_tcp_active_connections%v = %v after every connection closed, want 0", inbound, v)
	}
	if v := env.value(t, "vigil_tcp_connect_failures_total", client(okAddr)); v != 0 {
		t.Errorf("connects to %s counted as failed: %v", okAddr, v)
	}
	if v := env.value(t, "vigil_ebpf_events_lost_total", nil); v != 0 {
		t.Errorf("events lost: %v", v)
	}
}
