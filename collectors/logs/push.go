package logs

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// The Loki push request, protobuf-encoded by hand from the buffer's
// records, so that entries go from the frame to the request body without a
// push.Entry, a time.Time or a second sizing pass per entry. The bytes are
// those gogo-protobuf's push.PushRequest.Marshal writes for the same request
// (github.com/grafana/loki/pkg/push, push.proto):
//
//	PushRequest { repeated Stream streams = 1; }
//	Stream      { string labels = 1; repeated Entry entries = 2; }
//	Entry       { google.protobuf.Timestamp timestamp = 1; string line = 2;
//	              repeated LabelPair structuredMetadata = 3; }
//	Timestamp   { int64 seconds = 1; int32 nanos = 2; }
//	LabelPair   { string name = 1; string value = 2; }
//
// Empty strings and zero numbers are left out, as proto3 does; the
// timestamp is always written (gogo's non-nullable stdtime). push_test.go
// checks the bytes against gogo's encoder and its decoder, with a fuzz test.

const (
	tagStream    = 1<<3 | 2 // PushRequest.streams
	tagLabels    = 1<<3 | 2 // Stream.labels
	tagEntry     = 2<<3 | 2 // Stream.entries
	tagTimestamp = 1<<3 | 2 // Entry.timestamp
	tagLine      = 2<<3 | 2 // Entry.line
	tagMetadata  = 3<<3 | 2 // Entry.structuredMetadata
	tagSeconds   = 1 << 3   // Timestamp.seconds (wire type 0, varint)
	tagNanos     = 2 << 3   // Timestamp.nanos (wire type 0, varint)
	tagName      = 1<<3 | 2 // LabelPair.name
	tagValue     = 2<<3 | 2 // LabelPair.value
)

// sov is the length of x as a protobuf varint.
func sov(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// stringFieldSize is the encoded size of a string field, 0 when empty.
func stringFieldSize(s string) int {
	if len(s) == 0 {
		return 0
	}
	return 1 + sov(uint64(len(s))) + len(s)
}

func appendStringField(b []byte, tag byte, s string) []byte {
	if len(s) == 0 {
		return b
	}
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// splitTime splits Unix nanoseconds as time.Unix(0, ts) does: seconds
// rounded down, nanoseconds in [0, 1e9).
func splitTime(ts int64) (sec int64, nsec int64) {
	sec, nsec = ts/1e9, ts%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	return sec, nsec
}

func timestampSize(sec, nsec int64) int {
	n := 0
	if sec != 0 {
		n += 1 + sov(uint64(sec))
	}
	if nsec != 0 {
		n += 1 + sov(uint64(nsec))
	}
	return n
}

// entrySize is the encoded size of an Entry message whose structured
// metadata fields take meta bytes.
func entrySize(ts int64, lineLen, meta int) int {
	t := timestampSize(splitTime(ts))
	n := 1 + sov(uint64(t)) + t + meta
	if lineLen > 0 {
		n += 1 + sov(uint64(lineLen)) + lineLen
	}
	return n
}

// entryFieldSize is the size of an entry inside its Stream: tag, length
// and message.
func entryFieldSize(ts int64, lineLen, meta int) int {
	n := entrySize(ts, lineLen, meta)
	return 1 + sov(uint64(n)) + n
}

// appendMetadata appends the structuredMetadata fields of an entry: the
// record's pairs, then stream=stdout|stderr unless stream is streamNone.
func appendMetadata(b []byte, meta []kv, stream uint8) []byte {
	pair := func(b []byte, k, v string) []byte {
		b = append(b, tagMetadata)
		b = binary.AppendUvarint(b, uint64(stringFieldSize(k)+stringFieldSize(v)))
		b = appendStringField(b, tagName, k)
		return appendStringField(b, tagValue, v)
	}
	for _, m := range meta {
		b = pair(b, m.k, m.v)
	}
	if stream != streamNone {
		b = pair(b, "stream", streamNames[stream])
	}
	return b
}

// encodeBatch appends the PushRequest of streams to b.
func encodeBatch(b []byte, streams []*batchStream) ([]byte, error) {
	total := 0
	for _, st := range streams {
		total += 1 + sov(uint64(st.size)) + st.size
	}
	if cap(b)-len(b) < total {
		// A quarter more, so that the next (slightly larger) batch does
		// not need a fresh buffer and its page faults.
		b = append(make([]byte, 0, len(b)+total+total/4), b...)
	}
	start := len(b)
	for _, st := range streams {
		b = append(b, tagStream)
		b = binary.AppendUvarint(b, uint64(st.size))
		streamStart := len(b)
		b = appendStringField(b, tagLabels, st.labels)
		for i := range st.recs {
			br := &st.recs[i]
			// add sized the entries before a damaged one (the frame's
			// checksum makes that all but impossible): the same ones
			// are written here.
			_ = (&record{ents: br.ents, n: br.n}).eachEntry(func(ts int64, stream uint8, line []byte) {
				meta := br.meta[stream]
				sec, nsec := splitTime(ts)
				b = append(b, tagEntry)
				b = binary.AppendUvarint(b, uint64(entrySize(ts, len(line), len(meta))))
				b = append(b, tagTimestamp)
				b = binary.AppendUvarint(b, uint64(timestampSize(sec, nsec)))
				if sec != 0 {
					b = append(b, tagSeconds)
					b = binary.AppendUvarint(b, uint64(sec))
				}
				if nsec != 0 {
					b = append(b, tagNanos)
					b = binary.AppendUvarint(b, uint64(nsec))
				}
				if len(line) > 0 {
					b = append(b, tagLine)
					b = binary.AppendUvarint(b, uint64(len(line)))
					b = append(b, line...)
				}
				b = append(b, meta...)
			})
		}
		if got := len(b) - streamStart; got != st.size {
			return b[:start], fmt.Errorf("stream %s encoded to %d bytes, sized %d", st.labels, got, st.size)
		}
	}
	return b, nil
}
