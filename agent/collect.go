package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors"
)

var (
	collectorSuccessDesc = prometheus.NewDesc("vigil_collector_success",
		"Whether the collector succeeded in the last scrape (1) or failed (0).", []string{"collector"}, nil)
	collectorDurationDesc = prometheus.NewDesc("vigil_collector_duration_seconds",
		"How long the collector took in the last scrape.", []string{"collector"}, nil)
)

// runningCollector is one built collector and the configuration it was
// built from.
type runningCollector struct {
	name    string
	cfg     *CollectorConfig
	c       collectors.Collector
	logger  *slog.Logger
	started bool // Lifecycle.Start succeeded (or there is no Lifecycle)
	err     error
}

// collectorSet runs every collector concurrently on each Collect, each
// bounded by a timeout, and reports vigil_collector_success and
// vigil_collector_duration_seconds for each. A failing, panicking or hung
// collector marks itself failed and never breaks the scrape.
type collectorSet struct {
	mu      sync.RWMutex
	running map[string]*runningCollector
	timeout time.Duration
}

// collectors returns the collectors that started.
func (s *collectorSet) collectors() []collectors.Collector {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]collectors.Collector, 0, len(s.running))
	for _, rc := range s.running {
		if rc.started {
			out = append(out, rc.c)
		}
	}
	return out
}

// Describe sends nothing: the set is an unchecked collector, since which
// metrics a collector exposes depends on the host.
func (s *collectorSet) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (s *collectorSet) Collect(ch chan<- prometheus.Metric) { s.CollectNames(nil, ch) }

// CollectNames implements metricreg.NamesCollector: a collector that is a
// collectors.NamesUpdater is asked only for the families keep accepts
// (nil: everything, as Collect).
func (s *collectorSet) CollectNames(keep func(name string) bool, ch chan<- prometheus.Metric) {
	s.mu.RLock()
	running := make([]*runningCollector, 0, len(s.running))
	for _, rc := range s.running {
		running = append(running, rc)
	}
	timeout := s.timeout
	s.mu.RUnlock()

	var wg sync.WaitGroup
	for _, rc := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.collectOne(rc, timeout, keep, ch)
		}()
	}
	wg.Wait()
}

func (s *collectorSet) collectOne(rc *runningCollector, timeout time.Duration, keep func(string) bool, ch chan<- prometheus.Metric) {
	start := time.Now()
	err := rc.err
	if rc.started {
		err = runUpdate(rc, timeout, keep, ch)
	}
	success := 1.0
	if err != nil {
		success = 0
		rc.logger.Warn("collector failed", "err", err, "duration_seconds", time.Since(start).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(collectorDurationDesc, prometheus.GaugeValue, time.Since(start).Seconds(), rc.name)
	ch <- prometheus.MustNewConstMetric(collectorSuccessDesc, prometheus.GaugeValue, success, rc.name)
}

var errCollectorTimeout = errors.New("collector did not finish within collector_timeout")

// runUpdate calls Update with a deadline. Samples pass through a private
// channel, so a collector that overruns its deadline can never write to the
// scrape's channel after the scrape has moved on; a goroutine drains what it
// still sends until it returns.
func runUpdate(rc *runningCollector, timeout time.Duration, keep func(string) bool, out chan<- prometheus.Metric) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	in := make(chan prometheus.Metric, 64)
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- errors.New("collector panicked: " + panicString(r))
			}
			close(in)
		}()
		if nu, ok := rc.c.(collectors.NamesUpdater); ok && keep != nil {
			done <- nu.UpdateNames(ctx, keep, in)
			return
		}
		done <- rc.c.Update(ctx, in)
	}()
	for {
		select {
		case m, ok := <-in:
			if !ok {
				return <-done
			}
			out <- m
		case <-ctx.Done():
			go func() {
				for range in {
				}
			}()
			return errCollectorTimeout
		}
	}
}

func panicString(r any) string {
	switch v := r.(type) {
	case error:
		return v.Error()
	case string:
		return v
	}
	return "unknown panic"
}
