package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

func otlpRequest(t *testing.T, ids ...int) plogotlp.ExportRequest {
	t.Helper()
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for _, id := range ids {
		lrs.AppendEmpty().Body().SetStr(fmt.Sprintf("level=info msg=x id=%09d path=/", id))
	}
	return plogotlp.NewExportRequestFromLogs(ld)
}

func post(t *testing.T, url, ctype, enc string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// TestSinkCountsEveryEncoding sends the same kind of lines as Loki push and
// as OTLP in each encoding the collector may use, and checks the counts a
// benchmark run reads, duplicates and refused requests included.
func TestSinkCountsEveryEncoding(t *testing.T) {
	srv := httptest.NewServer(newMux(&counter{}))
	defer srv.Close()

	// Loki push, protobuf + snappy: ids 0 and 1.
	pr := push.PushRequest{Streams: []push.Stream{{
		Labels: `{job="bench"}`,
		Entries: []push.Entry{
			{Timestamp: time.Unix(1, 0), Line: "id=000000000 a"},
			{Timestamp: time.Unix(1, 0), Line: "id=000000001 b"},
		},
	}}}
	raw, err := pr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if code := post(t, srv.URL+"/loki/api/v1/push", "application/x-protobuf", "", snappy.Encode(nil, raw)); code != http.StatusNoContent {
		t.Fatalf("Loki push: status %d", code)
	}

	pb := func(ids ...int) []byte {
		b, err := otlpRequest(t, ids...).MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(pb(3, 4))
	zw.Close()
	var framed bytes.Buffer
	sw := snappy.NewBufferedWriter(&framed)
	sw.Write(pb(6))
	sw.Close()
	zenc, _ := zstd.NewWriter(nil)
	zst := zenc.EncodeAll(pb(8), nil)
	zenc.Close()
	js, err := otlpRequest(t, 9, 0).MarshalJSON() // id 0 again: a duplicate
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, ctype, enc string
		body             []byte
	}{
		{"plain", "application/x-protobuf", "", pb(2)},
		{"gzip", "application/x-protobuf", "gzip", gz.Bytes()},
		{"snappy block", "application/x-protobuf", "snappy", snappy.Encode(nil, pb(5))},
		{"snappy framed", "application/x-protobuf", "snappy", framed.Bytes()},
		{"x-snappy-framed", "application/x-protobuf", "x-snappy-framed", framed.Bytes()}, // id 6 again: a duplicate
		{"zstd", "application/x-protobuf", "zstd", zst},
		{"json", "application/json", "", js},
	} {
		if code := post(t, srv.URL+"/v1/logs", c.ctype, c.enc, c.body); code != http.StatusOK {
			t.Errorf("OTLP %s: status %d", c.name, code)
		}
	}
	// Refused: an unknown encoding and a body that is not OTLP.
	if code := post(t, srv.URL+"/v1/logs", "application/x-protobuf", "br", pb(7)); code != http.StatusBadRequest {
		t.Errorf("OTLP br: status %d, want 400", code)
	}
	if code := post(t, srv.URL+"/v1/logs", "application/x-protobuf", "gzip", []byte("not gzip")); code != http.StatusBadRequest {
		t.Errorf("OTLP bad gzip: status %d, want 400", code)
	}

	if got := get(t, srv.URL+"/count"); got != "9" {
		t.Errorf("/count = %s, want 9 (ids 0-6, 8, 9)", got)
	}
	if got, want := get(t, srv.URL+"/stats"), "records=11 distinct=9 duplicates=2 errors=2"; got != want {
		t.Errorf("/stats = %q, want %q", got, want)
	}
	if code := post(t, srv.URL+"/reset", "", "", nil); code != http.StatusOK {
		t.Fatalf("reset: status %d", code)
	}
	if got := get(t, srv.URL+"/stats"); got != "records=0 distinct=0 duplicates=0 errors=0" {
		t.Errorf("after reset /stats = %q", got)
	}
}

func TestLineID(t *testing.T) {
	for line, want := range map[string]int64{
		"a id=000000042 b": 42,
		"id=7":             7,
		"no id here":       -1,
		"id=x":             -1,
	} {
		id, ok := lineID(line)
		if !ok {
			id = ^uint64(0)
		}
		if int64(id) != want {
			t.Errorf("lineID(%q) = %d, %v; want %d", line, id, ok, want)
		}
	}
}
