package exporters

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// selfMetrics are the exporters' own metrics on /metrics.
type selfMetrics struct {
	sent, failed, dropped *prometheus.CounterVec
	gatherErrors          prometheus.Counter

	queueItems, queueBytes, queueMaxItems, queueMaxBytes *prometheus.Desc
	nodeInfo                                             *prometheus.Desc

	// queues reports the running queues; set by New.
	queues func(yield func(target, signal string, items, bytes, maxItems, maxBytes int64))

	nodeMu sync.Mutex
	node   NodeResource
}

func newSelfMetrics(reg prometheus.Registerer) (*selfMetrics, error) {
	labels := []string{"exporter", "signal"}
	m := &selfMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_exporter_sent_total",
			Help: "Samples (metric data points), log records or spans the backend accepted.",
		}, labels),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_exporter_send_failed_total",
			Help: "Send attempts that failed (each is retried, unless the backend rejected the data for good).",
		}, labels),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_exporter_dropped_total",
			Help: "Samples, log records or spans dropped: the oldest, pushed out of a full queue, or rejected for good by the backend.",
		}, labels),
		gatherErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_exporter_gather_errors_total",
			Help: "Metric gathers for export that reported an error (what was gathered is still exported).",
		}),
		queueItems:    prometheus.NewDesc("vigil_exporter_queue_length", "Samples, log records or spans waiting in the queue.", labels, nil),
		queueBytes:    prometheus.NewDesc("vigil_exporter_queue_bytes", "Encoded bytes waiting in the queue.", labels, nil),
		queueMaxItems: prometheus.NewDesc("vigil_exporter_queue_capacity", "The queue's bound in samples, log records or spans.", labels, nil),
		queueMaxBytes: prometheus.NewDesc("vigil_exporter_queue_capacity_bytes", "The queue's bound in encoded bytes.", labels, nil),
		nodeInfo: prometheus.NewDesc("vigil_node_info",
			"This node's identity, as exported in OpenTelemetry resource attributes (host.name, host.id, os.type, k8s.node.name).",
			[]string{"host_name", "host_id", "os_type", "k8s_node_name"}, nil),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sent, m.failed, m.dropped, m.gatherErrors, m} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("exporters: self-metrics are already registered")
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *selfMetrics) setNode(n NodeResource) {
	m.nodeMu.Lock()
	m.node = n
	m.nodeMu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *selfMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.queueItems
	ch <- m.queueBytes
	ch <- m.queueMaxItems
	ch <- m.queueMaxBytes
	ch <- m.nodeInfo
}

// Collect implements prometheus.Collector.
func (m *selfMetrics) Collect(ch chan<- prometheus.Metric) {
	m.nodeMu.Lock()
	n := m.node
	m.nodeMu.Unlock()
	if n.HostName != "" || n.K8sNodeName != "" {
		_, values := n.Labels()
		ch <- prometheus.MustNewConstMetric(m.nodeInfo, prometheus.GaugeValue, 1, values...)
	}
	if m.queues == nil {
		return
	}
	m.queues(func(target, signal string, items, bytes, maxItems, maxBytes int64) {
		ch <- prometheus.MustNewConstMetric(m.queueItems, prometheus.GaugeValue, float64(items), target, signal)
		ch <- prometheus.MustNewConstMetric(m.queueBytes, prometheus.GaugeValue, float64(bytes), target, signal)
		ch <- prometheus.MustNewConstMetric(m.queueMaxItems, prometheus.GaugeValue, float64(maxItems), target, signal)
		ch <- prometheus.MustNewConstMetric(m.queueMaxBytes, prometheus.GaugeValue, float64(maxBytes), target, signal)
	})
}
