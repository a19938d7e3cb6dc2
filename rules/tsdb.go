package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// LocalStorage is the embedded TSDB: a Prometheus TSDB head (no WAL, no
// blocks) that keeps Retention of samples and is truncated as it goes, so
// its memory is bounded by series × retention. It is a storage.Queryable
// for the PromQL engine and a storage.AppendableV2 for the rule manager
// (recording rules, ALERTS, ALERTS_FOR_STATE).
type LocalStorage struct {
	head    *tsdb.Head
	dir     string
	tempDir bool
	logger  *slog.Logger

	mu        sync.Mutex // serialises Ingest and Truncate
	retention time.Duration
	maxSeries int
	// series maps a series' labels hash to what the last ingest appended;
	// seen marks the ones present in the current ingest.
	series       map[uint64][]*ingested
	lastTruncate time.Time
	// lastIngest is the previous ingest's time (ms; 0 before the first).
	// gone remembers, by labels hash, series that vanished and when, for
	// as long as data is retained: a counter that comes back is not new.
	lastIngest int64
	gone       map[uint64]int64
	// want holds the metric names the loaded rules read and their
	// selectors' matchers; nil stores every series (rules.ingest_all, or
	// a selector without a fixed name).
	want Selection

	skipped prometheus.Counter

	samples, dropped, stale prometheus.Counter
	zeros                   prometheus.Counter
	ingestErrors            prometheus.Counter
	ingestDuration          prometheus.Histogram
	seriesGauge             prometheus.GaugeFunc
}

type ingested struct {
	lset labels.Labels
	ref  storage.SeriesRef
	gen  uint64 // ingest generation it was last seen in
}

// StorageOptions configure a LocalStorage.
type StorageOptions struct {
	// Dir is where full chunks are memory-mapped; empty means a new
	// temporary directory, removed by Close.
	Dir       string
	Retention time.Duration
	MaxSeries int
	Logger    *slog.Logger
	// Registerer receives the head's and the ingester's metrics; may be nil.
	Registerer prometheus.Registerer
}

// NewLocalStorage opens an empty head.
func NewLocalStorage(o StorageOptions) (*LocalStorage, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &LocalStorage{dir: o.Dir, logger: o.Logger, retention: o.Retention, maxSeries: o.MaxSeries, series: map[uint64][]*ingested{}, gone: map[uint64]int64{}}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "vigil-tsdb-")
		if err != nil {
			return nil, fmt.Errorf("local TSDB: %w", err)
		}
		s.dir, s.tempDir = d, true
	} else if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("local TSDB: %w", err)
	}
	ho := tsdb.DefaultHeadOptions()
	ho.ChunkDirRoot = s.dir
	// Chunks are cut at least every retention, so truncation frees memory
	// in steps of at most one retention.
	ho.ChunkRange = max(o.Retention.Milliseconds(), time.Minute.Milliseconds())
	// The head's series map is split into stripes, each with its own lock
	// and maps; Prometheus's 16384 cost 4 MB of heap for a store that one
	// ingest loop writes and a few rule groups read (docs/cost.md).
	ho.StripeSize = 512
	head, err := tsdb.NewHead(o.Registerer, o.Logger, nil, nil, ho, nil)
	if err != nil {
		s.removeDir()
		return nil, fmt.Errorf("local TSDB: %w", err)
	}
	if err := head.Init(math.MinInt64); err != nil {
		head.Close()
		s.removeDir()
		return nil, fmt.Errorf("local TSDB: %w", err)
	}
	s.head = head
	s.samples = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_rules_tsdb_samples_appended_total", Help: "Samples appended to the local TSDB from the agent's metrics."})
	s.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_rules_tsdb_samples_dropped_total", Help: "Samples not stored in the local TSDB: series beyond max_series, or rejected by the head."})
	s.zeros = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_rules_tsdb_created_zeros_total", Help: "Zero samples written before the first sample of new counter series, so that increase() and rate() count their first increments."})
	s.stale = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_rules_tsdb_stale_markers_total", Help: "Staleness markers written for series that disappeared from the agent's metrics."})
	s.ingestErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_rules_tsdb_ingest_errors_total", Help: "Ingest cycles that failed (gather or commit errors)."})
	s.ingestDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vigil_rules_tsdb_ingest_duration_seconds", Help: "Time to gather the agent's metrics and append them to the local TSDB.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)})
	s.skipped = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_rules_tsdb_samples_skipped_total", Help: "Samples of the agent's metrics not stored in the local TSDB because no loaded rule reads their metric name or no selector of it matches their labels (rules.ingest_all stores them all); a histogram or summary of which no rule reads any part is left out before it is read and counts once."})
	s.seriesGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_rules_tsdb_series", Help: "Series in the local TSDB head."}, func() float64 { return float64(head.NumSeries()) })
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{s.samples, s.dropped, s.skipped, s.stale, s.zeros, s.ingestErrors, s.ingestDuration, s.seriesGauge} {
			if err := o.Registerer.Register(c); err != nil {
				s.Close()
				return nil, fmt.Errorf("local TSDB metrics: %w", err)
			}
		}
	}
	return s, nil
}

func (s *LocalStorage) removeDir() {
	if s.tempDir {
		os.RemoveAll(s.dir)
	}
}

// SetLimits changes retention and the series bound (on reload).
func (s *LocalStorage) SetLimits(retention time.Duration, maxSeries int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retention, s.maxSeries = retention, maxSeries
}

// Selection is what the local TSDB stores: for each metric name the rules
// read, the label matchers (other than the name) of the selectors that
// read it. A series of the name is stored when it matches every matcher of
// one of them; a name with no matcher set, or with an empty one (a
// selector of the bare name), stores every series of the name. A series
// that matches none of a name's selectors can never be in a rule's
// result, so leaving it out changes no rule.
type Selection map[string][][]*labels.Matcher

// stores reports whether the selection stores the series lset of name.
func (sel Selection) stores(name string, lset labels.Labels) bool {
	sets := sel[name]
	if len(sets) == 0 {
		return true
	}
next:
	for _, ms := range sets {
		for _, m := range ms {
			if !m.Matches(lset.Get(m.Name)) {
				continue next
			}
		}
		return true
	}
	return false
}

// Select stores only the series selection want selects from the next
// ingest on; nil stores every series. A series that stops being stored
// gets a staleness marker, as one that vanished does.
func (s *LocalStorage) Select(want Selection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = want
}

// Querier implements storage.Queryable over the head.
func (s *LocalStorage) Querier(mint, maxt int64) (storage.Querier, error) {
	return tsdb.NewBlockQuerier(tsdb.NewRangeHead(s.head, mint, maxt), mint, maxt)
}

// AppenderV2 implements storage.AppendableV2.
func (s *LocalStorage) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return s.head.AppenderV2(ctx)
}

// Head returns the underlying TSDB head (for statistics).
func (s *LocalStorage) Head() *tsdb.Head { return s.head }

// Close releases the head and removes a temporary directory.
func (s *LocalStorage) Close() error {
	err := s.head.Close()
	s.removeDir()
	return err
}

// NameGatherer is a Gatherer that can gather only the metric families
// whose names keep accepts, leaving the others unconverted (the agent's
// registry, internal/metricreg). skipped counts the metrics left out, one
// per metric (a histogram or a summary counts once).
type NameGatherer interface {
	prometheus.Gatherer
	GatherNames(keep func(name string) bool) (mfs []*dto.MetricFamily, skipped int, err error)
}

// Ingest gathers g and appends its samples at time ts: those of the metric
// names selected (Select), or every one. With a selection and a
// NameGatherer, only the families the selection reads are gathered (a
// histogram's or summary's family when its _bucket, _sum or _count is
// read). Series that were
// present in the previous ingest but not in this one get a staleness
// marker, as Prometheus's scrape loop does. Old data is truncated every
// few ingests.
func (s *LocalStorage) Ingest(g prometheus.Gatherer, ts time.Time, gen uint64) error {
	start := time.Now()
	defer func() { s.ingestDuration.Observe(time.Since(start).Seconds()) }()
	s.mu.Lock()
	want := s.want
	s.mu.Unlock()
	var (
		mfs       []*dto.MetricFamily
		gerr      error
		unread    int
		selective bool
	)
	if ng, ok := g.(NameGatherer); ok && want != nil {
		selective = true
		mfs, unread, gerr = ng.GatherNames(func(name string) bool {
			for _, n := range [...]string{name, name + "_bucket", name + "_sum", name + "_count"} {
				if _, ok := want[n]; ok {
					return true
				}
			}
			return false
		})
	} else {
		mfs, gerr = g.Gather()
	}
	if len(mfs) == 0 && gerr != nil && !selective {
		s.ingestErrors.Inc()
		return gerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := ts.UnixMilli()
	app := s.head.AppenderV2(context.Background())
	var b labels.ScratchBuilder
	var appended, dropped, zeros float64
	skipped := float64(unread)
	// add appends one sample. For a cumulative series (counter, histogram
	// bucket/count/sum, summary count/sum) that appears for the first time
	// after the first ingest, a zero sample is written first, at the
	// previous ingest's time (or the series' created time if later), as
	// Prometheus does with created-timestamp zero ingestion: the series did
	// not exist then, so it was zero. Without it increase() and rate() miss
	// the first increments of every new series — a crash-looping container
	// gets a new container ID, so a new series, at each restart, and its
	// exits would never count. A series seen before (vanished and back) gets
	// no zero: its value may be an old cumulative total.
	add := func(name string, lp []*dto.LabelPair, extraName, extraValue string, v float64, cumulative bool, created int64) {
		if want != nil {
			if _, ok := want[name]; !ok {
				skipped++
				return
			}
		}
		b.Reset()
		b.Add(model.MetricNameLabel, name)
		for _, p := range lp {
			if p.GetValue() != "" {
				b.Add(p.GetName(), p.GetValue())
			}
		}
		if extraName != "" {
			b.Add(extraName, extraValue)
		}
		b.Sort()
		lset := b.Labels()
		if want != nil && !want.stores(name, lset) {
			skipped++
			return
		}
		h := lset.Hash()
		var e *ingested
		for _, c := range s.series[h] {
			if labels.Equal(c.lset, lset) {
				e = c
				break
			}
		}
		if e == nil {
			if len(s.series) >= s.maxSeries {
				dropped++
				return
			}
			e = &ingested{lset: lset}
			s.series[h] = append(s.series[h], e)
			if _, seen := s.gone[h]; cumulative && !seen && s.lastIngest > 0 && v > 0 {
				zt := s.lastIngest
				if created > zt && created < t {
					zt = created
				}
				if zt < t {
					if ref, err := app.Append(0, lset, 0, zt, 0, nil, nil, storage.AOptions{MetricFamilyName: name}); err == nil {
						e.ref = ref
						zeros++
					}
				}
			}
		}
		if e.gen == gen {
			return // duplicate series in one gather
		}
		ref, err := app.Append(e.ref, lset, 0, t, v, nil, nil, storage.AOptions{MetricFamilyName: name})
		if err != nil {
			dropped++
			return
		}
		e.ref, e.gen = ref, gen
		appended++
	}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			lp := m.GetLabel()
			switch {
			case m.Counter != nil:
				add(name, lp, "", "", m.GetCounter().GetValue(), true, m.GetCounter().GetCreatedTimestamp().AsTime().UnixMilli())
			case m.Gauge != nil:
				add(name, lp, "", "", m.GetGauge().GetValue(), false, 0)
			case m.Untyped != nil:
				add(name, lp, "", "", m.GetUntyped().GetValue(), false, 0)
			case m.Summary != nil:
				sm := m.GetSummary()
				ct := sm.GetCreatedTimestamp().AsTime().UnixMilli()
				for _, q := range sm.GetQuantile() {
					add(name, lp, "quantile", formatFloat(q.GetQuantile()), q.GetValue(), false, 0)
				}
				add(name+"_sum", lp, "", "", sm.GetSampleSum(), true, ct)
				add(name+"_count", lp, "", "", float64(sm.GetSampleCount()), true, ct)
			case m.Histogram != nil:
				hg := m.GetHistogram()
				ct := hg.GetCreatedTimestamp().AsTime().UnixMilli()
				inf := false
				for _, bk := range hg.GetBucket() {
					if math.IsInf(bk.GetUpperBound(), 1) {
						inf = true
					}
					add(name+"_bucket", lp, "le", formatFloat(bk.GetUpperBound()), float64(bk.GetCumulativeCount()), true, ct)
				}
				if !inf && len(hg.GetBucket()) > 0 {
					add(name+"_bucket", lp, "le", "+Inf", float64(hg.GetSampleCount()), true, ct)
				}
				add(name+"_sum", lp, "", "", hg.GetSampleSum(), true, ct)
				add(name+"_count", lp, "", "", float64(hg.GetSampleCount()), true, ct)
			}
		}
	}
	// Series that vanished: write a staleness marker once and forget them.
	var stale float64
	for h, list := range s.series {
		kept := list[:0]
		for _, e := range list {
			if e.gen == gen {
				kept = append(kept, e)
				continue
			}
			if _, err := app.Append(e.ref, e.lset, 0, t, math.Float64frombits(value.StaleNaN), nil, nil, storage.AOptions{}); err == nil {
				stale++
			}
			s.gone[h] = t
		}
		if len(kept) == 0 {
			delete(s.series, h)
		} else {
			s.series[h] = kept
		}
	}
	if err := app.Commit(); err != nil {
		s.ingestErrors.Inc()
		return fmt.Errorf("commit: %w", err)
	}
	s.lastIngest = t
	for h, at := range s.gone {
		if t-at > s.retention.Milliseconds() {
			delete(s.gone, h)
		}
	}
	s.zeros.Add(zeros)
	s.samples.Add(appended)
	s.dropped.Add(dropped)
	s.skipped.Add(skipped)
	s.stale.Add(stale)
	if ts.Sub(s.lastTruncate) >= s.retention/4 {
		s.lastTruncate = ts
		if err := s.truncate(ts); err != nil {
			return err
		}
	}
	if gerr != nil {
		s.ingestErrors.Inc()
		return fmt.Errorf("gather (partial data stored): %w", gerr)
	}
	return nil
}

// truncate drops data older than the retention.
func (s *LocalStorage) truncate(now time.Time) error {
	mint := now.Add(-s.retention).UnixMilli()
	if s.head.MinTime() >= mint {
		return nil
	}
	if err := s.head.Truncate(mint); err != nil {
		return errors.Join(errors.New("truncate local TSDB"), err)
	}
	return nil
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return fmt.Sprint(f)
}
