// Package route folds HTTP request targets into low-cardinality routes for
// metric labels. It is shared by the HTTP/1.x parser of the eBPF collector
// and the HTTP/2 decoder (collectors/ebpf/h2), so a request's route is the
// same whichever protocol version carried it.
package route

import "strings"

// maxRouteSegments bounds how many path segments a route keeps.
const maxRouteSegments = 4

// Of turns a request target into a low-cardinality route: the query
// is dropped, segments that look like identifiers (numbers, UUIDs, long hex
// or long tokens) become {id}, and only the first few segments are kept.
func Of(target string) (path, route string) {
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
