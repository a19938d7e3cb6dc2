//go:build linux

package ebpf

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"
)

// oneWorkload resolves every cgroup to the same named workload, so the
// request readers cache its series as they do a real workload's.
type oneWorkload workload.Identity

func (w oneWorkload) Identity(uint64) workload.Identity { return workload.Identity(w) }

// BenchmarkHandleRedisCommand is the user-space cost of one Redis command
// seen on the client side: the command's record and its reply's, paired
// and counted (series cached: a resolved workload, one server).
func BenchmarkHandleRedisCommand(b *testing.B) {
	cfg := NewConfig()
	m := newMetrics(cfg)
	log := slog.New(slog.DiscardHandler)
	wl := oneWorkload{SystemdUnit: "bench.service", CgroupPath: "/system.slice/bench.service"}
	h := newHandlers(cfg, m, wl, newClock(), event.NewBus(), newSpanQueue(nil, m.spansDropped, "", log), log)
	now := monotonicNS()
	req := sampleL7(protoRedis, httpWrite, true, now, "*2\r\n$3\r\nGET\r\n$1\r\na\r\n")
	reply := sampleL7(protoRedis, httpRead, false, now+1000, "$1\r\nx\r\n")
	rawReq, rawReply := encode(b, req), encode(b, reply)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		h.handleHTTP(rawReq)
		h.handleHTTP(rawReply)
		n++
	}
	b.StopTimer()
	if got := testutil.CollectAndCount(m.redisRequests); got != 1 {
		b.Fatalf("%d Redis series, want 1", got)
	}
	if got := testutil.ToFloat64(m.protoUnmatched.WithLabelValues("redis")); got != 0 {
		b.Fatalf("%v commands unmatched, want 0 of %d", got, n)
	}
}
