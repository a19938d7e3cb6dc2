package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/golang/snappy"
	promconfig "github.com/prometheus/common/config"
)

// shipper reads committed records from the disk buffer, batches them by
// size and time, and pushes each batch to Loki as protobuf+snappy (the push
// API's native encoding: a push.PushRequest of github.com/grafana/loki/pkg/push,
// written by encodeBatch straight from the buffer frames, see push.go). A
// batch is acknowledged in the buffer only after Loki answered 2xx, so a
// crash re-sends only the batch in flight, and so does a push that timed out
// (Loki may have stored it anyway): see docs/logs.md, Durability.
type shipper struct {
	cfg    LokiConfig
	url    string
	client *http.Client
	buf    *diskBuffer
	m      *selfMetrics
	logger *slog.Logger

	// The batch being built. Streams and their record slices are kept
	// across batches (a node has few streams) so that a batch does not
	// grow them again; order lists those with entries in this batch.
	streams map[string]*batchStream
	order   []*batchStream
	// meta holds the encoded structured metadata of the batch's records
	// (batchRec.meta slices it).
	meta []byte
	// payloads are the buffer frames the batch's lines alias; given back
	// to the cursor once the batch is acknowledged.
	payloads [][]byte
	cur      *cursor
	lastSeq  uint64
	lines    int
	bytes    int
	started  time.Time
	body     []byte
	comp     []byte
}

func newShipper(cfg LokiConfig, buf *diskBuffer, m *selfMetrics, logger *slog.Logger) (*shipper, error) {
	client, err := promconfig.NewClientFromConfig(cfg.HTTP, "vigil-logs",
		promconfig.WithUserAgent("vigil-logs"))
	if err != nil {
		return nil, fmt.Errorf("loki http client: %w", err)
	}
	client.Timeout = cfg.Timeout
	return &shipper{cfg: cfg, url: cfg.URL, client: client, buf: buf, m: m, logger: logger,
		streams: map[string]*batchStream{}}, nil
}

// batchStream is a stream of the batch being built.
type batchStream struct {
	labels string
	recs   []batchRec
	size   int  // encoded size of the push.Stream message so far
	queued bool // in order
}

// batchRec is a buffer record in a batch: its entries stay encoded as the
// buffer holds them (aliasing the frame), with the structured metadata
// fields each entry gets, encoded once per record and stream byte.
type batchRec struct {
	ents []byte
	n    int
	meta [3][]byte
}

// maxKeptStreams bounds the streams kept between batches; above it the
// map is emptied (streams of files long gone are not kept forever).
const maxKeptStreams = 4096

// run ships until ctx is cancelled. Whatever is not acknowledged by then
// stays in the buffer for the next start.
func (s *shipper) run(ctx context.Context) {
	cur := s.buf.newCursor()
	s.cur = cur
	defer func() { s.cur.close() }()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		r, ok, err := cur.next()
		if err != nil {
			// A damaged frame in the middle of the buffer: stop reading it
			// rather than skip silently; it is logged and counted, and the
			// rest ships after a restart cuts it off.
			s.m.bufferErrors.Inc()
			s.logger.Error("cannot read log buffer; shipping paused", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(s.cfg.MaxBackoff):
			}
			cur.close()
			cur = s.buf.newCursor()
			s.cur = cur
			continue
		}
		if ok {
			s.add(&r)
			if s.bytes >= s.cfg.BatchSize {
				s.flush(ctx)
			}
			continue
		}
		wait := time.Hour
		if s.lines > 0 || s.lastSeq != 0 {
			wait = s.cfg.BatchWait - time.Since(s.started)
			if wait <= 0 {
				s.flush(ctx)
				continue
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-s.buf.notify:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// add puts a record's entries into the batch.
func (s *shipper) add(r *record) {
	if s.lastSeq == 0 && s.lines == 0 {
		s.started = time.Now()
	}
	s.lastSeq = r.seq
	if r.payload != nil {
		s.payloads = append(s.payloads, r.payload)
	}
	if r.n == 0 {
		return // a position-only record (its lines were dropped)
	}
	st := s.streams[r.labels]
	if st == nil {
		st = &batchStream{labels: r.labels}
		s.streams[r.labels] = st
	}
	if !st.queued {
		st.queued = true
		st.size = stringFieldSize(st.labels)
		s.order = append(s.order, st)
	}
	br := batchRec{ents: r.ents, n: r.n}
	for i := range br.meta {
		start := len(s.meta)
		s.meta = appendMetadata(s.meta, r.meta, uint8(i))
		br.meta[i] = s.meta[start:len(s.meta):len(s.meta)]
	}
	_ = r.eachEntry(func(ts int64, stream uint8, line []byte) {
		st.size += entryFieldSize(ts, len(line), len(br.meta[stream]))
		s.lines++
		s.bytes += len(line)
	})
	st.recs = append(st.recs, br)
}

// reset empties the batch once it is acknowledged (or dropped): its
// entries and the buffer frames they alias are no longer referenced.
func (s *shipper) reset() {
	for _, st := range s.order {
		clear(st.recs)
		st.recs = st.recs[:0]
		st.queued, st.size = false, 0
	}
	s.order = s.order[:0]
	s.meta = s.meta[:0]
	if len(s.streams) > maxKeptStreams {
		clear(s.streams)
	}
	if s.cur != nil {
		s.cur.recycle(s.payloads...)
	}
	clear(s.payloads)
	s.payloads = s.payloads[:0]
	s.lastSeq, s.lines, s.bytes = 0, 0, 0
}

// flush pushes the batch, retrying with backoff until Loki takes it, refuses
// it for good, or ctx ends.
func (s *shipper) flush(ctx context.Context) {
	if s.lastSeq == 0 {
		return
	}
	if s.lines == 0 {
		s.ackBatch()
		return
	}
	var err error
	s.body, err = encodeBatch(s.body[:0], s.order)
	if err != nil {
		s.logger.Error("cannot encode Loki push request; dropping batch", "err", err, "lines", s.lines)
		s.m.dropped.WithLabelValues("encode").Add(float64(s.lines))
		s.ackBatch()
		return
	}
	s.comp = snappy.Encode(s.comp[:cap(s.comp)], s.body)
	backoff := s.cfg.MinBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 && ctx.Err() != nil {
			return // shutting down: the batch stays in the buffer
		}
		status, err := s.send(ctx, s.comp)
		if err == nil {
			s.m.sentLines.Add(float64(s.lines))
			s.m.sentBytes.Add(float64(s.bytes))
			s.m.batches.Inc()
			s.ackBatch()
			return
		}
		if ctx.Err() != nil {
			return // shutting down: the batch stays in the buffer
		}
		if status >= 400 && status < 500 && status != http.StatusTooManyRequests {
			s.m.sendFailures.WithLabelValues(statusReason(status)).Inc()
			s.m.dropped.WithLabelValues("rejected").Add(float64(s.lines))
			s.logger.Error("Loki refused a batch; it is dropped", "status", status, "err", err, "lines", s.lines)
			s.ackBatch()
			return
		}
		s.m.sendFailures.WithLabelValues(statusReason(status)).Inc()
		s.m.retries.Inc()
		// Log the first failure and then every tenth, not every retry.
		if attempt%10 == 0 {
			s.logger.Warn("Loki push failed; retrying", "err", err, "status", status, "attempt", attempt+1, "backoff", backoff)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

func statusReason(status int) string {
	if status == 0 {
		return "network"
	}
	return fmt.Sprintf("%dxx", status/100)
}

func (s *shipper) ackBatch() {
	if err := s.buf.ack(s.lastSeq); err != nil {
		s.m.bufferErrors.Inc()
		s.logger.Warn("cannot save the log buffer acknowledgement", "err", err)
	}
	s.reset()
}

// send does one push; status is 0 when no response came.
func (s *shipper) send(ctx context.Context, body []byte) (int, error) {
	// A request in flight when the agent shuts down is allowed to finish
	// (within the timeout), so a clean restart sends nothing twice unless
	// that request timed out.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if s.cfg.TenantID != "" {
		req.Header.Set("X-Scope-OrgID", s.cfg.TenantID)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, errors.New(resp.Status + ": " + string(bytes.TrimSpace(msg)))
}
