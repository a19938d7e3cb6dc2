package ebpf

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
)

// httpMessage is what is read from the beginning of an HTTP/1.x message
// captured by the kernel: a request line with a few headers, or a status
// line.
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
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok {
		// The start line itself was cut: only usable if it is a status
		// line long enough to carry the code.
		line, rest = b, nil
	}
	if v, ok := bytes.CutPrefix(line, []byte("HTTP/1.")); ok {
		// HTTP/1.1 200 OK
		if len(v) < 5 || (v[0] != '0' && v[0] != '1') || v[1] != ' ' {
			return m, errNotHTTP
		}
		code, err := strconv.Atoi(string(v[2:5]))
		if err != nil || code < 100 || code > 999 || (len(v) > 5 && v[5] != ' ') {
			return m, errNotHTTP
		}
		m.Version = "1." + string(v[0])
		m.Status = code
		return m, nil
	}
	if !ok {
		return m, errNotHTTP
	}
	method, after, ok1 := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(after, []byte(" "))
	if !ok1 || !ok2 || !validMethod(method) || len(target) == 0 {
		return m, errNotHTTP
	}
	switch string(version) {
	case "HTTP/1.1":
		m.Version = "1.1"
	case "HTTP/1.0":
		m.Version = "1.0"
	default:
		return m, errNotHTTP
	}
	m.Request = true
	m.Method = string(method)
	m.Target = string(target)
	for len(rest) > 0 {
		var h []byte
		h, rest, ok = bytes.Cut(rest, []byte("\r\n"))
		if !ok || len(h) == 0 {
			break // cut header or end of headers
		}
		name, value, found := bytes.Cut(h, []byte(":"))
		if !found || len(h) > maxHeaderLine {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("host")):
			m.Host = string(value)
		case bytes.EqualFold(name, []byte("traceparent")):
			m.TraceParent = string(value)
		}
	}
	return m, nil
}

func validMethod(m []byte) bool {
	switch string(m) {
	case "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS":
		return true
	}
	return false
}

// traceParent is a parsed W3C traceparent header.
type traceParent struct {
	TraceID [16]byte
	SpanID  [8]byte
	Sampled bool
}

// parseTraceParent parses a W3C Trace Context traceparent header value
// ("00-<32 hex>-<16 hex>-<2 hex>"). All-zero IDs are invalid.
func parseTraceParent(s string) (traceParent, bool) {
	var tp traceParent
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return tp, false
	}
	ver, err := hex.DecodeString(s[:2])
	if err != nil || ver[0] == 0xff || (ver[0] == 0 && len(s) != 55) {
		return tp, false
	}
	if _, err := hex.Decode(tp.TraceID[:], []byte(s[3:35])); err != nil {
		return tp, false
	}
	if _, err := hex.Decode(tp.SpanID[:], []byte(s[36:52])); err != nil {
		return tp, false
	}
	flags, err := hex.DecodeString(s[53:55])
	if err != nil || tp.TraceID == [16]byte{} || tp.SpanID == [8]byte{} {
		return tp, false
	}
	if strings.ToLower(s[:55]) != s[:55] {
		return tp, false // the spec allows lower-case hex only
	}
	tp.Sampled = flags[0]&1 == 1
	return tp, true
}

// maxRouteSegments bounds how many path segments a route keeps.
const maxRouteSegments = 4

// routeOf turns a request target into a low-cardinality route: the query
// is dropped, segments that look like identifiers (numbers, UUIDs, long hex
// or long tokens) become {id}, and only the first few segments are kept.
func routeOf(target string) (path, route string) {
	path = target
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if !strings.HasPrefix(path, "/") {
		// Absolute-form (proxy requests) or authority-form: keep the path.
		if i := strings.Index(path, "://"); i >= 0 {
			rest := path[i+3:]
			if j := strings.IndexByte(rest, '/'); j >= 0 {
				path = rest[j:]
			} else {
				path = "/"
			}
		} else {
			return path, "/"
		}
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var b strings.Builder
	for i, s := range segs {
		if s == "" {
			continue
		}
		if i == maxRouteSegments {
			b.WriteString("/*")
			break
		}
		b.WriteByte('/')
		if looksLikeID(s) {
			b.WriteString("{id}")
		} else {
			b.WriteString(s)
		}
	}
	if b.Len() == 0 {
		return path, "/"
	}
	return path, b.String()
}

// looksLikeID reports whether a path segment is probably a value rather
// than a fixed name.
func looksLikeID(s string) bool {
	if len(s) > 32 {
		return true
	}
	digits, hexes := 0, 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
			hexes++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			hexes++
		case c == '-' || c == '_' || c == '.':
		default:
			return digits > 0 && len(s) >= 16
		}
	}
	if digits == len(s) {
		return true // 42
	}
	// UUIDs and hashes: mostly hex with some digits, long enough.
	return digits > 0 && hexes >= 8 && hexes*10 >= len(s)*8
}

// statusClass returns "2xx" for 200 and so on.
func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}
