package logs

import (
	"github.com/prometheus/client_golang/prometheus"
)

// selfMetrics are the pipeline's own vigil_logs_* metrics. They are not
// registered anywhere: Update sends them with the collector's samples.
type selfMetrics struct {
	linesRead      prometheus.Counter
	bytesRead      prometheus.Counter
	records        prometheus.Counter
	truncated      prometheus.Counter
	parseErrors    *prometheus.CounterVec
	rotations      *prometheus.CounterVec
	dropped        *prometheus.CounterVec
	sentLines      prometheus.Counter
	sentBytes      prometheus.Counter
	batches        prometheus.Counter
	sendFailures   *prometheus.CounterVec
	retries        prometheus.Counter
	bufferErrors   prometheus.Counter
	readErrors     prometheus.Counter
	positionErrors prometheus.Counter
	filesOpen      prometheus.Gauge
	filesTracked   prometheus.Gauge
	filesWaiting   prometheus.Gauge
	bufferBytes    prometheus.Gauge
	bufferMax      prometheus.Gauge
	bufferSegs     prometheus.Gauge
	all            []prometheus.Collector
}

func newSelfMetrics() *selfMetrics {
	m := &selfMetrics{
		linesRead: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_lines_read_total",
			Help: "Physical lines read from log files."}),
		bytesRead: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_bytes_read_total",
			Help: "Bytes read from log files."}),
		records: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_records_total",
			Help: "Log records produced (after partial-line reassembly and multiline grouping)."}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_truncated_lines_total",
			Help: "Records cut to max_line_bytes."}),
		parseErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_logs_parse_errors_total",
			Help: "Lines that did not parse in their file's format; they are kept as plain lines."}, []string{"format"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_logs_rotations_total",
			Help: "File rotations seen, by kind (rename or truncate)."}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_logs_dropped_lines_total",
			Help: "Records not shipped, by reason: buffer_full, buffer_error, rejected (a 4xx from Loki), encode, pipeline_full."}, []string{"reason"}),
		sentLines: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_sent_lines_total",
			Help: "Records Loki accepted."}),
		sentBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_sent_bytes_total",
			Help: "Bytes of record text Loki accepted."}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_sent_batches_total",
			Help: "Push requests Loki accepted."}),
		sendFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_logs_send_failures_total",
			Help: "Failed push requests, by reason (network, 4xx, 5xx)."}, []string{"reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_send_retries_total",
			Help: "Push requests retried after a failure."}),
		bufferErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_buffer_errors_total",
			Help: "Errors writing or reading the disk buffer."}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_read_errors_total",
			Help: "Errors opening or reading log files."}),
		positionErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_logs_positions_errors_total",
			Help: "Failed writes of the positions file."}),
		filesOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_logs_files_open",
			Help: "Log files held open."}),
		filesTracked: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_logs_files_tracked",
			Help: "Log files found by the globs and pod log folder."}),
		filesWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_logs_files_waiting",
			Help: "Log files with unread data that wait for a free slot under max_open_files."}),
		bufferBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_logs_buffer_bytes",
			Help: "Bytes in the disk buffer (not yet acknowledged by Loki)."}),
		bufferMax: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_logs_buffer_max_bytes",
			Help: "The disk buffer's bound."}),
		bufferSegs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_logs_buffer_segments",
			Help: "Segment files in the disk buffer."}),
	}
	for _, r := range []string{"buffer_full", "buffer_error", "rejected", "encode", "pipeline_full"} {
		m.dropped.WithLabelValues(r)
	}
	for _, k := range []string{"rename", "truncate"} {
		m.rotations.WithLabelValues(k)
	}
	m.all = []prometheus.Collector{m.linesRead, m.bytesRead, m.records, m.truncated, m.parseErrors, m.rotations,
		m.dropped, m.sentLines, m.sentBytes, m.batches, m.sendFailures, m.retries, m.bufferErrors, m.readErrors, m.positionErrors,
		m.filesOpen, m.filesTracked, m.filesWaiting, m.bufferBytes, m.bufferMax, m.bufferSegs}
	return m
}

func (m *selfMetrics) collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all {
		c.Collect(ch)
	}
}
