package exporters

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"go.opentelemetry.io/collector/extension/xextension/storage"
)

// queue is a bounded FIFO of encoded requests (OTLP protobuf) for one
// target and signal. When a new request does not fit, the oldest requests
// are dropped until it does, so an outage costs the oldest data first and a
// recovering backend receives the most recent data within the bound. The
// request being sent is never dropped; the bound may be exceeded by that
// one request. With a storage client the requests are kept there (a bbolt
// file through the collector's filestorage extension) and only their sizes
// stay in memory; without one they are kept in memory.
type queue struct {
	maxItems, maxBytes int64
	client             storage.Client // nil: in memory
	// dropped is called with the number of items dropped, under mu.
	dropped func(items int64)

	mu       sync.Mutex
	entries  []queueEntry // oldest first
	items    int64
	bytes    int64
	nextSeq  uint64
	inflight uint64 // seq of the entry being sent; 0 when none
	closed   bool
	notify   chan struct{} // has a value when entries may be non-empty
}

type queueEntry struct {
	seq   uint64
	items int64
	bytes int64
	data  []byte // nil when persisted
}

// errQueueClosed is returned once the queue is closed.
var errQueueClosed = errors.New("queue closed")

func seqKey(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// newQueue opens a queue. With a client, the requests left from a previous
// run are loaded (their sizes; the data stays on disk) and, if they exceed
// the bounds, the oldest are dropped.
func newQueue(ctx context.Context, maxItems, maxBytes int64, client storage.Client, dropped func(int64)) (*queue, error) {
	q := &queue{maxItems: maxItems, maxBytes: maxBytes, client: client, dropped: dropped, nextSeq: 1, notify: make(chan struct{}, 1)}
	if client == nil {
		return q, nil
	}
	w, ok := client.(storage.Walker)
	if !ok {
		return nil, errors.New("the storage client cannot list its keys")
	}
	var bad []*storage.Operation
	err := w.Walk(ctx, func(key string, value []byte) ([]*storage.Operation, error) {
		seq, err := strconv.ParseUint(key, 10, 64)
		if err != nil || len(value) < 8 {
			bad = append(bad, storage.DeleteOperation(key))
			return nil, nil
		}
		items := int64(binary.BigEndian.Uint64(value[:8]))
		q.entries = append(q.entries, queueEntry{seq: seq, items: items, bytes: int64(len(value) - 8)})
		q.items += items
		q.bytes += int64(len(value) - 8)
		q.nextSeq = max(q.nextSeq, seq+1)
		return nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the persistent queue: %w", err)
	}
	if len(bad) > 0 {
		_ = client.Batch(ctx, bad...)
	}
	q.mu.Lock()
	ops := q.evictLocked(0, 0)
	q.mu.Unlock()
	if len(ops) > 0 {
		if err := client.Batch(ctx, ops...); err != nil {
			return nil, fmt.Errorf("trimming the persistent queue: %w", err)
		}
	}
	if len(q.entries) > 0 {
		q.notify <- struct{}{}
	}
	return q, nil
}

// evictLocked drops the oldest entries, except the one being sent, until
// items and bytes more would fit. It returns the storage deletions to make.
func (q *queue) evictLocked(items, bytes int64) []*storage.Operation {
	var ops []*storage.Operation
	var n int64
	i := 0
	for q.items+items > q.maxItems || q.bytes+bytes > q.maxBytes {
		for i < len(q.entries) && q.entries[i].seq == q.inflight {
			i++
		}
		if i >= len(q.entries) {
			break
		}
		e := q.entries[i]
		q.entries = append(q.entries[:i], q.entries[i+1:]...)
		q.items -= e.items
		q.bytes -= e.bytes
		n += e.items
		if q.client != nil {
			ops = append(ops, storage.DeleteOperation(seqKey(e.seq)))
		}
	}
	if n > 0 && q.dropped != nil {
		q.dropped(n)
	}
	return ops
}

// Push appends a request of items items. A request larger than the bounds
// on its own is dropped (and counted); otherwise the oldest requests make
// room. It never blocks on the backend.
func (q *queue) Push(ctx context.Context, data []byte, items int64) error {
	size := int64(len(data))
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		if q.dropped != nil {
			q.dropped(items)
		}
		return errQueueClosed
	}
	if items > q.maxItems || size > q.maxBytes {
		if q.dropped != nil {
			q.dropped(items)
		}
		return fmt.Errorf("a request of %d items and %d bytes exceeds the queue's bounds (%d items, %d bytes)", items, size, q.maxItems, q.maxBytes)
	}
	ops := q.evictLocked(items, size)
	e := queueEntry{seq: q.nextSeq, items: items, bytes: size}
	if q.client != nil {
		v := make([]byte, 8+len(data))
		binary.BigEndian.PutUint64(v, uint64(items))
		copy(v[8:], data)
		ops = append(ops, storage.SetOperation(seqKey(e.seq), v))
		// Storage writes happen under the lock so that the file's order is
		// the queue's order.
		if err := q.client.Batch(ctx, ops...); err != nil {
			if q.dropped != nil {
				q.dropped(items)
			}
			return fmt.Errorf("writing to the persistent queue: %w", err)
		}
	} else {
		e.data = data
	}
	q.nextSeq++
	q.entries = append(q.entries, e)
	q.items += items
	q.bytes += size
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return nil
}

// Next waits for the oldest request and marks it as being sent. It returns
// false when ctx is done or the queue is closed.
func (q *queue) Next(ctx context.Context) (queueEntry, []byte, bool) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return queueEntry{}, nil, false
		}
		if len(q.entries) > 0 {
			e := q.entries[0]
			q.inflight = e.seq
			client := q.client
			q.mu.Unlock()
			data := e.data
			if client != nil {
				v, err := client.Get(ctx, seqKey(e.seq))
				if err != nil || len(v) < 8 {
					if ctx.Err() != nil {
						q.Release(e.seq)
						return queueEntry{}, nil, false
					}
					// Unreadable: drop it rather than block the queue.
					q.remove(e.seq, true)
					continue
				}
				data = v[8:]
			}
			return e, data, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return queueEntry{}, nil, false
		case <-q.notify:
		}
	}
}

// Done removes a request after it was sent (or rejected for good).
func (q *queue) Done(seq uint64) { q.remove(seq, false) }

func (q *queue) remove(seq uint64, countDropped bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inflight == seq {
		q.inflight = 0
	}
	for i, e := range q.entries {
		if e.seq != seq {
			continue
		}
		q.entries = append(q.entries[:i], q.entries[i+1:]...)
		q.items -= e.items
		q.bytes -= e.bytes
		if countDropped && q.dropped != nil {
			q.dropped(e.items)
		}
		if q.client != nil {
			_ = q.client.Delete(context.Background(), seqKey(seq))
		}
		break
	}
	if len(q.entries) > 0 {
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
}

// Release makes the request being sent droppable again after a failed
// attempt; it stays at the head of the queue.
func (q *queue) Release(seq uint64) {
	q.mu.Lock()
	if q.inflight == seq {
		q.inflight = 0
	}
	q.mu.Unlock()
}

// takeInMemory removes and returns every request of an in-memory queue,
// oldest first, so that a reload can move them to the new queue; a
// persistent queue keeps its requests on disk and returns none. Call it
// only once the queue's sender has stopped.
func (q *queue) takeInMemory() []queueEntry {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.client != nil || q.closed {
		return nil
	}
	es := q.entries
	q.entries, q.items, q.bytes, q.inflight = nil, 0, 0, 0
	return es
}

// Len returns the queued items and bytes.
func (q *queue) Len() (items, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items, q.bytes
}

// Close stops Next and Push. In-memory requests are lost (and counted as
// dropped); persisted requests stay for the next run.
func (q *queue) Close(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	if q.client == nil {
		if q.items > 0 && q.dropped != nil {
			q.dropped(q.items)
		}
		q.entries, q.items, q.bytes = nil, 0, 0
		return nil
	}
	return q.client.Close(ctx)
}
