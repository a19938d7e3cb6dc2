package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"
)

// VictoriaLogs is a VictoriaLogs server (Apache-2.0) started by
// [StartVictoriaLogs]. It is the harness's Loki-protocol log store: it takes
// Loki pushes and OTLP logs, and is read back with its LogsQL query API (it
// has no Loki query API).
type VictoriaLogs struct {
	// URL is the base URL, http://127.0.0.1:<port> (or the
	// [VictoriaLogsOptions.ListenHost]).
	URL string
	// DataDir is the storage folder; it is kept across Stop and Start.
	DataDir string
	// Process is the server process; Stop, Start and Restart keep the port
	// and the data, for outage tests.
	*Process
}

// VictoriaLogsOptions tune [StartVictoriaLogsWith].
type VictoriaLogsOptions struct {
	// ListenHost is the address to listen on (default 127.0.0.1). Pods of a
	// real node reach the host only on [Node.HostIP]: a Vigil DaemonSet
	// pod that pushes its logs here needs ListenHost: k.Node.HostIP.
	ListenHost string
}

// StartVictoriaLogs starts VictoriaLogs with its data in the test's temp
// folder and waits until it is ready.
func StartVictoriaLogs(t TB) *VictoriaLogs {
	t.Helper()
	return StartVictoriaLogsWith(t, VictoriaLogsOptions{})
}

// StartVictoriaLogsWith is [StartVictoriaLogs] with options.
func StartVictoriaLogsWith(t TB, opts VictoriaLogsOptions) *VictoriaLogs {
	t.Helper()
	bin := Binary(t, "victoria-logs")
	dir := t.TempDir()
	host := opts.ListenHost
	if host == "" {
		host = "127.0.0.1"
	}
	v := &VictoriaLogs{DataDir: filepath.Join(dir, "data")}
	v.Process = StartOnFreePorts(t, 1, func(ports []int) Command {
		addr := net.JoinHostPort(host, strconv.Itoa(ports[0]))
		v.URL = "http://" + addr
		return Command{
			Name: "victoria-logs",
			Path: bin,
			Args: []string{
				"-httpListenAddr=" + addr,
				"-storageDataPath=" + v.DataDir,
				"-inmemoryDataFlushInterval=1s",
				"-retentionPeriod=100y",
				"-loggerLevel=INFO",
			},
			Ready: HTTPReady(v.URL + "/health"),
		}
	})
	return v
}

// LokiPushURL returns the Loki push endpoint (JSON, or protobuf with snappy).
func (v *VictoriaLogs) LokiPushURL() string { return v.URL + "/insert/loki/api/v1/push" }

// OTLPLogsURL returns the OTLP/HTTP logs endpoint.
func (v *VictoriaLogs) OTLPLogsURL() string { return v.URL + "/insert/opentelemetry/v1/logs" }

// Flush makes everything ingested so far visible to queries at once.
func (v *VictoriaLogs) Flush(ctx context.Context) error {
	_, err := httpGet(ctx, v.URL+"/internal/force_flush")
	return err
}

// Query runs a LogsQL query over all time and returns one decoded JSON object
// per log entry (fields such as _msg, _time, _stream and the stream labels).
func (v *VictoriaLogs) Query(ctx context.Context, logsql string) ([]map[string]any, error) {
	form := url.Values{"query": {logsql}, "start": {"0"}, "end": {strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL+"/select/logsql/query", bytes.NewBufferString(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	body, err := doHTTP(req)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("logsql result line %q: %w", line, err)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}
