package logs

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
)

// gogoRequest builds, from the same records, the push.PushRequest the
// shipper sent before it had its own encoder: streams in order of first
// appearance, the record's metadata plus stream=stdout|stderr per entry.
func gogoRequest(recs []*record) push.PushRequest {
	var req push.PushRequest
	index := map[string]int{}
	for _, r := range recs {
		if r.n == 0 {
			continue
		}
		i, ok := index[r.labels]
		if !ok {
			i = len(req.Streams)
			index[r.labels] = i
			req.Streams = append(req.Streams, push.Stream{Labels: r.labels})
		}
		_ = r.eachEntry(func(ts int64, stream uint8, line []byte) {
			var md push.LabelsAdapter
			for _, m := range r.meta {
				md = append(md, push.LabelAdapter{Name: m.k, Value: m.v})
			}
			if stream != streamNone {
				md = append(md, push.LabelAdapter{Name: "stream", Value: streamNames[stream]})
			}
			req.Streams[i].Entries = append(req.Streams[i].Entries,
				push.Entry{Timestamp: time.Unix(0, ts), Line: string(line), StructuredMetadata: md})
		})
	}
	return req
}

// encodeRecords batches recs as the shipper does and encodes the request.
func encodeRecords(t testing.TB, recs []*record) []byte {
	t.Helper()
	s := &shipper{streams: map[string]*batchStream{}}
	for _, r := range recs {
		s.add(r)
	}
	body, err := encodeBatch(nil, s.order)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// checkEncoding compares our encoding of recs with gogo-protobuf's, byte
// for byte, and decodes ours with push.PushRequest.Unmarshal.
func checkEncoding(t testing.TB, recs []*record) {
	t.Helper()
	got := encodeRecords(t, recs)
	want := gogoRequest(recs)
	wantBytes, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wantBytes) {
		t.Fatalf("encoding differs from gogo's:\n got %x\nwant %x", got, wantBytes)
	}
	var dec push.PushRequest
	if err := dec.Unmarshal(got); err != nil {
		t.Fatalf("push.PushRequest.Unmarshal: %v", err)
	}
	if len(dec.Streams) != len(want.Streams) {
		t.Fatalf("decoded %d streams, want %d", len(dec.Streams), len(want.Streams))
	}
	for i, st := range dec.Streams {
		ws := want.Streams[i]
		if st.Labels != ws.Labels || len(st.Entries) != len(ws.Entries) {
			t.Fatalf("stream %d: %q with %d entries, want %q with %d", i, st.Labels, len(st.Entries), ws.Labels, len(ws.Entries))
		}
		for j, e := range st.Entries {
			we := ws.Entries[j]
			if !e.Timestamp.Equal(we.Timestamp) || e.Line != we.Line || fmt.Sprint(e.StructuredMetadata) != fmt.Sprint(we.StructuredMetadata) {
				t.Fatalf("stream %d entry %d: %v %q %v, want %v %q %v", i, j,
					e.Timestamp, e.Line, e.StructuredMetadata, we.Timestamp, we.Line, we.StructuredMetadata)
			}
		}
	}
}

func TestPushEncodingMatchesGogo(t *testing.T) {
	long := bytes.Repeat([]byte("z"), 300)
	rec := func(labels string, meta []kv, ents ...any) *record {
		r := &record{labels: labels, meta: meta}
		for i := 0; i < len(ents); i += 3 {
			r.addEntry(ents[i].(int64), ents[i+1].(uint8), ents[i+2].([]byte))
		}
		return r
	}
	pod := []kv{{"filename", "/var/log/pods/a_b_c/d/0.log"}, {"pod_uid", "c"}}
	cases := map[string][]*record{
		"one plain line": {rec(`{job="x"}`, []kv{{"filename", "/x.log"}}, int64(1732590000123456789), streamNone, []byte("hello"))},
		"streams and metadata": {
			rec(`{namespace="a", pod="b"}`, pod, int64(1), streamStdout, []byte("out"), int64(2), streamStderr, long),
			rec(`{job="y"}`, nil, int64(3e9), streamNone, []byte("y")),
			rec(`{namespace="a", pod="b"}`, pod, int64(4), streamStderr, []byte("again")),
		},
		"empty line, zero and negative time, empty values": {
			rec(`{job="x"}`, []kv{{"", "v"}, {"k", ""}}, int64(0), streamNone, []byte{}, int64(-1), streamStdout, []byte("before 1970"),
				int64(-3e9), streamNone, []byte("x"), int64(1<<62), streamStderr, []byte("2116")),
		},
		"no labels":                    {rec("", nil, int64(5), streamNone, []byte("a"))},
		"position-only record skipped": {{labels: `{job="x"}`}, rec(`{job="x"}`, nil, int64(5), streamNone, []byte("a"))},
	}
	for name, recs := range cases {
		t.Run(name, func(t *testing.T) { checkEncoding(t, recs) })
	}
}

// The encoder writes records as the buffer frames them: read back through
// the disk buffer's encoding first.
func FuzzPushEncoding(f *testing.F) {
	f.Add(`{job="x"}`, `{job="y"}`, "filename", "/x.log", int64(1732590000123456789), int64(-5), []byte("line"), []byte(""), uint8(1), uint8(7), true)
	f.Add("", "", "", "", int64(0), int64(1<<62), []byte{0, 0xff}, []byte("z"), uint8(0), uint8(2), false)
	f.Fuzz(func(t *testing.T, l1, l2, k, v string, ts1, ts2 int64, line1, line2 []byte, s1, s2 uint8, split bool) {
		r1 := &record{labels: l1, meta: []kv{{k, v}}}
		r1.addEntry(ts1, s1, line1)
		r1.addEntry(ts2, s2, line2)
		r2 := &record{labels: l2}
		r2.addEntry(ts2, s1, line2)
		recs := []*record{r1, r2}
		if split {
			r3 := &record{labels: l1, meta: []kv{{v, k}}}
			r3.addEntry(ts1^ts2, s2, line1)
			recs = append(recs, r3)
		}
		for i, r := range recs {
			dec, err := decodeRecord(r.encode(nil, true))
			if err != nil {
				t.Fatal(err)
			}
			recs[i] = &dec
		}
		checkEncoding(t, recs)
	})
}
