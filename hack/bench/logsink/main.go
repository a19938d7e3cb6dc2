// Command logsink is the benchmark's log sink: it accepts the Loki push API
// (protobuf + snappy, as Vigil sends it) and OTLP/HTTP logs (protobuf or
// JSON; uncompressed, gzip, zstd, snappy block or framed, as the
// OpenTelemetry Collector's otlphttp exporter may send them), decodes every
// request fully and counts the records, so that `make bench` measures the
// agents and not a store.
//
// Each line the benchmark writes carries "id=<digits>"; the sink keeps a
// bitmap of the ids it has seen, so that a line delivered twice is counted
// once in "distinct" and once in "duplicates". Lines without an id count as
// distinct. GET /count prints the number of distinct lines; GET /stats prints
// "records=N distinct=N duplicates=N errors=N"; POST /reset zeroes it all.
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

// counter tracks records and distinct line ids.
type counter struct {
	mu         sync.Mutex
	seen       []uint64 // bitmap of ids
	records    int64
	distinct   int64
	duplicates int64
	errors     int64
}

// add counts one line.
func (c *counter) add(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records++
	id, ok := lineID(line)
	if !ok {
		c.distinct++
		return
	}
	w, b := id/64, uint64(1)<<(id%64)
	for uint64(len(c.seen)) <= w {
		c.seen = append(c.seen, 0)
	}
	if c.seen[w]&b != 0 {
		c.duplicates++
		return
	}
	c.seen[w] |= b
	c.distinct++
}

func (c *counter) fail() {
	c.mu.Lock()
	c.errors++
	c.mu.Unlock()
}

func (c *counter) reset() {
	c.mu.Lock()
	c.seen, c.records, c.distinct, c.duplicates, c.errors = nil, 0, 0, 0, 0
	c.mu.Unlock()
}

// lineID returns the number after the first "id=" in line, if any. Ids
// above 1<<32 are not tracked (the benchmark writes at most a few million).
func lineID(line string) (uint64, bool) {
	i := strings.Index(line, "id=")
	if i < 0 {
		return 0, false
	}
	var id uint64
	n := 0
	for _, ch := range line[i+3:] {
		if ch < '0' || ch > '9' || n == 10 {
			break
		}
		id = id*10 + uint64(ch-'0')
		n++
	}
	return id, n > 0 && id < 1<<32
}

// decodeBody reads the request body, undoing its Content-Encoding.
func decodeBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return io.ReadAll(zr)
	case "zstd":
		zr, err := zstd.NewReader(nil)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return zr.DecodeAll(body, nil)
	case "snappy", "x-snappy-framed":
		// The collector sent framed snappy as "snappy" in older versions.
		if bytes.HasPrefix(body, []byte("\xff\x06\x00\x00sNaPpY")) {
			return io.ReadAll(snappy.NewReader(bytes.NewReader(body)))
		}
		return snappy.Decode(nil, body)
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q", enc)
	}
}

func main() {
	addrFile := flag.String("addr-file", "", "write the listen address to this file")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Fatal(http.Serve(ln, newMux(&counter{})))
}

// newMux returns the sink's handlers, counting into c.
func newMux(c *counter) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /loki/api/v1/push", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			c.fail()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			c.fail()
			http.Error(w, "snappy: "+err.Error(), http.StatusBadRequest)
			return
		}
		var req push.PushRequest
		if err := req.Unmarshal(raw); err != nil {
			c.fail()
			http.Error(w, "protobuf: "+err.Error(), http.StatusBadRequest)
			return
		}
		for _, s := range req.Streams {
			for _, e := range s.Entries {
				c.add(e.Line)
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/logs", func(w http.ResponseWriter, r *http.Request) {
		body, err := decodeBody(r)
		if err != nil {
			c.fail()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := plogotlp.NewExportRequest()
		isJSON := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
		if isJSON {
			err = req.UnmarshalJSON(body)
		} else {
			err = req.UnmarshalProto(body)
		}
		if err != nil {
			c.fail()
			http.Error(w, "OTLP: "+err.Error(), http.StatusBadRequest)
			return
		}
		countLogs(c, req.Logs())
		var out []byte
		if isJSON {
			out, _ = plogotlp.NewExportResponse().MarshalJSON()
			w.Header().Set("Content-Type", "application/json")
		} else {
			out, _ = plogotlp.NewExportResponse().MarshalProto()
			w.Header().Set("Content-Type", "application/x-protobuf")
		}
		w.Write(out)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		fmt.Fprintln(w, c.distinct)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		fmt.Fprintf(w, "records=%d distinct=%d duplicates=%d errors=%d\n", c.records, c.distinct, c.duplicates, c.errors)
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		c.reset()
	})
	return mux
}

// countLogs counts every log record's body as one line.
func countLogs(c *counter, ld plog.Logs) {
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			lrs := sls.At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				c.add(lrs.At(k).Body().AsString())
			}
		}
	}
}
