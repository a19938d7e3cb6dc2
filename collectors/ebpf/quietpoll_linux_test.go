//go:build linux

package ebpf

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

func TestQuietPollSchedule(t *testing.T) {
	ms := time.Millisecond
	var got []time.Duration
	for quiet := 8; quiet <= 15; quiet++ {
		got = append(got, quietPoll(100*ms, quiet))
	}
	if want := "[100ms 100ms 200ms 400ms 800ms 1s 1s 1s]"; fmt.Sprint(got) != want {
		t.Errorf("waits after 8..15 empty polls: %v, want %s", got, want)
	}
	// A poll interval the governor has already lengthened past the cap
	// is kept as it is.
	if d := quietPoll(2*time.Second, 50); d != 2*time.Second {
		t.Errorf("lengthened interval became %s", d)
	}
}

// An idle ring (a real BPF ring buffer nothing writes to) is polled ten
// times in the first second and then less and less often; closing the
// reader still ends the loop at once.
func TestQuietRingPollsLessOften(t *testing.T) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		t.Skipf("this kernel cannot make a BPF ring buffer: %v", err)
	}
	defer m.Close()
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	c := &collector{cfg: cfg, log: slog.New(slog.DiscardHandler), m: newMetrics(cfg)}
	var polls atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.read(rd, "events", func([]byte) { t.Error("a record from an empty ring") }, func() { polls.Add(1) })
	}()
	start := time.Now()
	time.Sleep(4 * time.Second)
	n := polls.Load()
	elapsed := time.Since(start)
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// Every 100 ms this would be about 40 polls; quiet, it is 10 in the
	// first second, then 200, 400, 800 ms and 1 s apart: about 15 in 4 s.
	// A loaded machine fires timers late, which only lowers the count.
	if max := int64(elapsed/quietPollMax) + quietPollAfter + 4; n > max || n < quietPollAfter {
		t.Errorf("%d polls of a quiet ring in %s, want between %d and %d", n, elapsed.Round(time.Millisecond), quietPollAfter, max)
	}
	t.Logf("%d polls of a quiet ring in %s", n, elapsed.Round(time.Millisecond))
}
