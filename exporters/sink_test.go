package exporters

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
)

// sink is a receiving server in the test process: OTLP/HTTP
// (/v1/metrics, /v1/logs, /v1/traces), Prometheus remote write
// (/api/v1/write) and OTLP/gRPC on a second port. It decodes what the
// collector exporters send, so tests check the wire format; the real
// backends (Prometheus, an OpenTelemetry Collector, VictoriaLogs) are used
// in the testenv tests.
type sink struct {
	t        *testing.T
	httpAddr string
	grpcAddr string
	// delay holds every HTTP request this long (a slow backend).
	delay time.Duration
	// discard makes the sink only read and count requests (benchmarks).
	discard bool

	mu      sync.Mutex
	metrics []pmetric.Metrics
	logs    []plog.Logs
	traces  []ptrace.Traces
	series  []prompb.TimeSeries
	reqs    int

	httpSrv *http.Server
	grpcSrv *grpc.Server
	stopped chan struct{}
}

func newSink(t *testing.T) *sink {
	s := &sink{t: t}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var l net.Listener
	var err error
	for range 50 { // the port may linger for a moment after a stop
		if l, err = net.Listen("tcp", addr); err == nil {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

func (s *sink) start() {
	hl := listen(s.t, s.httpAddr)
	gl := listen(s.t, s.grpcAddr)
	s.httpAddr, s.grpcAddr = hl.Addr().String(), gl.Addr().String()
	s.stopped = make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.handle)
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.grpcSrv = grpc.NewServer()
	pmetricotlp.RegisterGRPCServer(s.grpcSrv, &grpcMetrics{s: s})
	plogotlp.RegisterGRPCServer(s.grpcSrv, &grpcLogs{s: s})
	ptraceotlp.RegisterGRPCServer(s.grpcSrv, &grpcTraces{s: s})
	hs, gs := s.httpSrv, s.grpcSrv
	go func() { _ = hs.Serve(hl) }()
	go func() { _ = gs.Serve(gl) }()
}

// stop closes both servers; restart brings them back on the same ports.
func (s *sink) stop() {
	if s.httpSrv == nil {
		return
	}
	close(s.stopped)
	_ = s.httpSrv.Close()
	s.grpcSrv.Stop()
	s.httpSrv, s.grpcSrv = nil, nil
}

func (s *sink) restart() { s.start() }

func (s *sink) url() string { return "http://" + s.httpAddr }

func (s *sink) handle(w http.ResponseWriter, r *http.Request) {
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-s.stopped:
		case <-r.Context().Done():
		}
	}
	var body io.Reader = r.Body
	if s.discard {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.reqs++
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs++
	switch r.URL.Path {
	case "/v1/metrics":
		req := pmetricotlp.NewExportRequest()
		err = req.UnmarshalProto(data)
		s.metrics = append(s.metrics, req.Metrics())
	case "/v1/logs":
		req := plogotlp.NewExportRequest()
		err = req.UnmarshalProto(data)
		s.logs = append(s.logs, req.Logs())
	case "/v1/traces":
		req := ptraceotlp.NewExportRequest()
		err = req.UnmarshalProto(data)
		s.traces = append(s.traces, req.Traces())
	case "/api/v1/write":
		var raw []byte
		raw, err = snappy.Decode(nil, data)
		if err == nil {
			var wr prompb.WriteRequest
			if err = wr.Unmarshal(raw); err == nil {
				s.series = append(s.series, wr.Timeseries...)
			}
		}
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

type grpcMetrics struct {
	pmetricotlp.UnimplementedGRPCServer
	s *sink
}

func (g *grpcMetrics) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	g.s.reqs++
	if g.s.discard {
		return pmetricotlp.NewExportResponse(), nil
	}
	md := pmetric.NewMetrics()
	req.Metrics().CopyTo(md)
	g.s.metrics = append(g.s.metrics, md)
	return pmetricotlp.NewExportResponse(), nil
}

type grpcLogs struct {
	plogotlp.UnimplementedGRPCServer
	s *sink
}

func (g *grpcLogs) Export(_ context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	g.s.reqs++
	ld := plog.NewLogs()
	req.Logs().CopyTo(ld)
	g.s.logs = append(g.s.logs, ld)
	return plogotlp.NewExportResponse(), nil
}

type grpcTraces struct {
	ptraceotlp.UnimplementedGRPCServer
	s *sink
}

func (g *grpcTraces) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	g.s.reqs++
	td := ptrace.NewTraces()
	req.Traces().CopyTo(td)
	g.s.traces = append(g.s.traces, td)
	return ptraceotlp.NewExportResponse(), nil
}

// logBodies returns the bodies of every log record received, in order.
func (s *sink) logBodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, ld := range s.logs {
		for i := 0; i < ld.ResourceLogs().Len(); i++ {
			sls := ld.ResourceLogs().At(i).ScopeLogs()
			for j := 0; j < sls.Len(); j++ {
				lrs := sls.At(j).LogRecords()
				for k := 0; k < lrs.Len(); k++ {
					out = append(out, lrs.At(k).Body().AsString())
				}
			}
		}
	}
	return out
}

func (s *sink) counts() (metrics, logs, spans, series int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, md := range s.metrics {
		metrics += md.DataPointCount()
	}
	for _, ld := range s.logs {
		logs += ld.LogRecordCount()
	}
	for _, td := range s.traces {
		spans += td.SpanCount()
	}
	return metrics, logs, spans, len(s.series)
}
