package exporters

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"go.opentelemetry.io/collector/component"
)

func collect(t *testing.T, q *queue) []string {
	t.Helper()
	var out []string
	for {
		items, _ := q.Len()
		if items == 0 {
			return out
		}
		e, data, ok := q.Next(context.Background())
		if !ok {
			t.Fatal("Next returned nothing with items queued")
		}
		out = append(out, string(data))
		q.Done(e.seq)
	}
}

func TestQueueDropsOldestAndCounts(t *testing.T) {
	ctx := context.Background()
	var dropped int64
	q, err := newQueue(ctx, 10, 1<<20, nil, func(n int64) { dropped += n })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if err := q.Push(ctx, []byte(fmt.Sprint("r", i)), 3); err != nil {
			t.Fatal(err)
		}
	}
	// 6 requests of 3 items, bound 10: the first three were pushed out.
	if dropped != 9 {
		t.Errorf("dropped = %d items, want 9", dropped)
	}
	if items, _ := q.Len(); items != 9 {
		t.Errorf("queued = %d items, want 9", items)
	}
	if got := fmt.Sprint(collect(t, q)); got != "[r3 r4 r5]" {
		t.Errorf("left = %s, want the newest three", got)
	}
	// Too large on its own: refused and counted.
	if err := q.Push(ctx, []byte("big"), 11); err == nil {
		t.Error("a request larger than the queue was accepted")
	}
	if dropped != 20 {
		t.Errorf("dropped = %d, want 20", dropped)
	}
}

func TestQueueByteBoundAndInflight(t *testing.T) {
	ctx := context.Background()
	var dropped int64
	q, _ := newQueue(ctx, 1000, 10, nil, func(n int64) { dropped += n })
	_ = q.Push(ctx, []byte("aaaa"), 1)
	e, _, _ := q.Next(ctx) // "aaaa" is being sent
	_ = q.Push(ctx, []byte("bbbb"), 1)
	_ = q.Push(ctx, []byte("cccc"), 1) // 12 bytes > 10: drops "bbbb", never the one in flight
	if dropped != 1 {
		t.Fatalf("dropped = %d, want 1", dropped)
	}
	q.Done(e.seq)
	if got := fmt.Sprint(collect(t, q)); got != "[cccc]" {
		t.Errorf("left = %s", got)
	}
}

func TestQueuePersistsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func(maxItems int64, dropped *int64) (*queue, func()) {
		ext, err := storageExtension(ctx, "otlp/test", dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		client, err := ext.GetClient(ctx, component.KindExporter, comp2ID("otlp/test"), SignalLogs)
		if err != nil {
			t.Fatal(err)
		}
		q, err := newQueue(ctx, maxItems, 1<<20, client, func(n int64) { *dropped += n })
		if err != nil {
			t.Fatal(err)
		}
		return q, func() {
			if err := q.Close(ctx); err != nil {
				t.Error(err)
			}
			if err := ext.Shutdown(ctx); err != nil {
				t.Error(err)
			}
		}
	}
	var dropped int64
	q, closeQ := open(100, &dropped)
	for i := range 5 {
		if err := q.Push(ctx, []byte(fmt.Sprint("r", i)), 10); err != nil {
			t.Fatal(err)
		}
	}
	e, _, _ := q.Next(ctx)
	q.Done(e.seq) // r0 sent
	closeQ()

	// Reopened with a smaller bound: what no longer fits (the oldest) is
	// dropped and counted; the rest is there, in order.
	dropped = 0
	q, closeQ = open(30, &dropped)
	defer closeQ()
	if dropped != 10 {
		t.Errorf("dropped on reopen = %d, want 10", dropped)
	}
	if err := q.Push(ctx, []byte("r5"), 10); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(collect(t, q)); got != "[r3 r4 r5]" {
		t.Errorf("after restart = %s, want [r3 r4 r5] (r1 dropped on reopen, r2 pushed out by r5)", got)
	}
}
