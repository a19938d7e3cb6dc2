package ebpf

import (
	"bytes"
	"errors"
	"strconv"
)

// httpMessage is what is read from the beginning of an HTTP/1.x message
// captured by the kernel: a request line with a few headers, or a status
// line. The collector's hot path uses parseRequestHead and
// parseStatusLine, which do not allocate; parseHTTP is their
// convenience form.
type httpMessage struct {
	Request     bool
	Method      string
	Target      string // request target as sent, e.g. /users/42?x=1
	Version     string // "1.0" or "1.1"
	Status      int
	Host        string
	TraceParent string
}

var errNotHTTP = errors.New("not an HTTP/1.x message")

// maxHeaderLine bounds one header line we look at.
const maxHeaderLine = 8192

// parseHTTP reads the start line and the Host and traceparent headers from
// b, which may be cut anywhere (only the first bytes are captured).
func parseHTTP(b []byte) (httpMessage, error) {
	var m httpMessage
	if version, code, ok := parseStatusLine(b); ok {
		m.Version, m.Status = version, code
		return m, nil
	}
	h, ok := parseRequestHead(b)
	if !ok {
		return m, errNotHTTP
	}
	m.Request = true
	m.Method = methods[h.method]
	m.Target = string(h.target)
	m.Version = h.version
	m.Host = string(h.host)
	m.TraceParent = string(h.traceParent)
	return m, nil
}

// methods are the request methods recognised; the index is a method's
// number in requestHead and in the metric keys.
// HTTP/1.x requests use the first seven (methodIndex); HTTP/2's :method
// may also be CONNECT, TRACE or anything else (_OTHER, OpenTelemetry's
// name for the rest).
var methods = [...]string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE", "_OTHER"}

func methodIndex(m []byte) int {
	switch string(m) { // no allocation: the compiler compares in place
	case "GET":
		return 0
	case "POST":
		return 1
	case "PUT":
		return 2
	case "PATCH":
		return 3
	case "DELETE":
		return 4
	case "HEAD":
		return 5
	case "OPTIONS":
		return 6
	}
	return -1
}

// requestHead is a request line and the headers the collector uses, as
// slices of the captured bytes.
type requestHead struct {
	method      int
	target      []byte
	version     string
	host        []byte
	traceParent []byte
	// complete is set when the blank line that ends the head was seen.
	complete bool
}

// parseStatusLine reads "HTTP/1.x NNN ..." at the start of b.
func parseStatusLine(b []byte) (version string, code int, ok bool) {
	v, found := bytes.CutPrefix(b, []byte("HTTP/1."))
	if !found || len(v) < 5 || (v[0] != '0' && v[0] != '1') || v[1] != ' ' {
		return "", 0, false
	}
	for _, c := range v[2:5] {
		if c < '0' || c > '9' {
			return "", 0, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || (len(v) > 5 && v[5] != ' ' && v[5] != '\r') {
		return "", 0, false
	}
	if v[0] == '0' {
		return "1.0", code, true
	}
	return "1.1", code, true
}

// parseRequestHead reads the request line at the start of b and then the
// headers, as far as b goes.
func parseRequestHead(b []byte) (requestHead, bool) {
	var h requestHead
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok {
		return h, false
	}
	method, after, ok1 := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(after, []byte(" "))
	h.method = methodIndex(method)
	if !ok1 || !ok2 || h.method < 0 || len(target) == 0 {
		return h, false
	}
	switch string(version) {
	case "HTTP/1.1":
		h.version = "1.1"
	case "HTTP/1.0":
		h.version = "1.0"
	default:
		return h, false
	}
	h.target = target
	h.scanHeaders(rest)
	return h, true
}

// scanHeaders looks for Host and traceparent in header lines; it stops at
// the blank line or at a cut line.
func (h *requestHead) scanHeaders(rest []byte) {
	for len(rest) > 0 {
		line, after, ok := bytes.Cut(rest, []byte("\r\n"))
		if !ok {
			return // cut header
		}
		rest = after
		if len(line) == 0 {
			h.complete = true
			return
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found || len(line) > maxHeaderLine {
			continue
		}
		switch len(name) {
		case 4:
			if bytes.EqualFold(name, []byte("host")) {
				h.host = bytes.TrimSpace(value)
			}
		case 11:
			if bytes.EqualFold(name, []byte("traceparent")) {
				h.traceParent = bytes.TrimSpace(value)
			}
		}
	}
}

// traceParent is a parsed W3C traceparent header.
type traceParent struct {
	TraceID [16]byte
	SpanID  [8]byte
	Sampled bool
}

// parseTraceParent parses a W3C Trace Context traceparent header value
// ("00-<32 hex>-<16 hex>-<2 hex>"). All-zero IDs are invalid.
func parseTraceParent[S ~string | ~[]byte](s S) (traceParent, bool) {
	var tp traceParent
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return tp, false
	}
	ver, ok := hexByte(s[0], s[1])
	if !ok || ver == 0xff || (ver == 0 && len(s) != 55) {
		return tp, false
	}
	for i := range tp.TraceID {
		if tp.TraceID[i], ok = hexByte(s[3+2*i], s[4+2*i]); !ok {
			return tp, false
		}
	}
	for i := range tp.SpanID {
		if tp.SpanID[i], ok = hexByte(s[36+2*i], s[37+2*i]); !ok {
			return tp, false
		}
	}
	flags, ok := hexByte(s[53], s[54])
	if !ok || tp.TraceID == [16]byte{} || tp.SpanID == [8]byte{} {
		return tp, false
	}
	tp.Sampled = flags&1 == 1
	return tp, true
}

// hexByte decodes two lower-case hex digits (the spec allows no others).
func hexByte(a, b byte) (byte, bool) {
	x, ok1 := hexDigit(a)
	y, ok2 := hexDigit(b)
	return x<<4 | y, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// statusClass returns "2xx" for 200 and so on.
func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}
