// Package pgproto decodes PostgreSQL's wire protocol (version 3) as the
// kernel captures it for the eBPF collector: the first bytes of a read or
// write, a run of messages of one type byte and a big-endian length that
// counts itself. The decoders read only what was captured, bound every
// length, and report a message cut by the end of the capture with the part
// of its body that was captured.
package pgproto

import "encoding/binary"

// maxMessage bounds a message's length (the server's own limit for most
// messages is 1 GB).
const maxMessage = 1 << 30

// FrontendTypes and BackendTypes are the message types a client and a
// server send after the startup phase.
const (
	FrontendTypes = "BCDEFHPQSXcdfp"
	BackendTypes  = "123ACDEGHIKNRSTVWZcdnstv"
)

func typeIn(t byte, types string) bool {
	for i := 0; i < len(types); i++ {
		if types[i] == t {
			return true
		}
	}
	return false
}

// Messages calls fn for each message at the start of b whose type is in
// types, with the captured part of its body and whether the body is whole.
// A message cut by the end of b is reported and ends the walk. cut tells
// whether the walk stopped inside a message or at bytes that are not a
// message (rather than exactly at the end of b); ok is false when b does
// not start with a message, so the transfer is not PostgreSQL.
func Messages(b []byte, types string, fn func(typ byte, body []byte, whole bool)) (n int, cut, ok bool) {
	i := 0
	for i < len(b) {
		if !typeIn(b[i], types) {
			return n, true, n > 0
		}
		if len(b)-i < 5 {
			// The length is cut: a message's type alone is not enough.
			return n, true, n > 0
		}
		l := binary.BigEndian.Uint32(b[i+1:])
		if l < 4 || l > maxMessage {
			return n, true, n > 0
		}
		end := int64(i) + 1 + int64(l)
		body := b[i+5 : min(int64(len(b)), end)]
		whole := end <= int64(len(b))
		fn(b[i], body, whole)
		n++
		if !whole {
			return n, true, true
		}
		i = int(end)
	}
	return n, false, n > 0
}

// CString returns the NUL-terminated string at the start of b and the rest
// after its NUL; ok is false when b holds no NUL.
func CString(b []byte) (s, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// CommandNames are the SQL commands counted by name, from a statement's
// first keyword; any other is "OTHER", so the label stays bounded.
var CommandNames = [...]string{"OTHER",
	"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "VALUES", "TABLE", "COPY",
	"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "PREPARE",
	"EXECUTE", "DEALLOCATE", "DECLARE", "FETCH", "MOVE", "CLOSE", "CREATE", "ALTER", "DROP",
	"TRUNCATE", "COMMENT", "GRANT", "REVOKE", "SET", "SHOW", "RESET", "DISCARD", "EXPLAIN", "ANALYZE",
	"VACUUM", "REINDEX", "CLUSTER", "CHECKPOINT", "REFRESH", "LOCK", "LISTEN", "UNLISTEN", "NOTIFY",
	"DO", "CALL",
}

var commandIndex = func() map[string]uint16 {
	m := make(map[string]uint16, len(CommandNames))
	for i, n := range CommandNames {
		if i > 0 {
			m[n] = uint16(i)
		}
	}
	return m
}()

// Command returns the index in CommandNames of a query's first
// keyword, after white space, comments and opening parentheses; 0 when it
// is none of them. Only the first statement of a query string counts.
func Command(q []byte) uint16 {
	i := 0
	for i < len(q) {
		switch c := q[i]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '(':
			i++
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			i += 2
			for i+1 < len(q) && (q[i] != '*' || q[i+1] != '/') {
				i++
			}
			i += 2
		default:
			var buf [12]byte
			n := 0
			for ; i < len(q) && n <= len(buf); i++ {
				c := q[i]
				if c >= 'a' && c <= 'z' {
					c -= 'a' - 'A'
				}
				if c < 'A' || c > 'Z' {
					break
				}
				if n == len(buf) {
					return 0
				}
				buf[n] = c
				n++
			}
			return commandIndex[string(buf[:n])]
		}
	}
	return 0
}

// ErrorClasses are the SQLSTATE classes (the code's first two
// characters) counted by name; an error of another class is "other".
// Index 0 is no error.
var ErrorClasses = [...]string{"none", "other",
	"01", "02", "03", "08", "09", "0A", "0B", "0F", "0L", "0P", "0Z", "20", "21", "22", "23", "24",
	"25", "26", "27", "28", "2B", "2D", "2F", "34", "38", "39", "3B", "3D", "3F", "40", "42", "44", "53",
	"54", "55", "57", "58", "72", "F0", "HV", "P0", "XX",
}

var errorIndex = func() map[string]uint8 {
	m := make(map[string]uint8, len(ErrorClasses))
	for i, n := range ErrorClasses {
		if i > 1 {
			m[n] = uint8(i)
		}
	}
	return m
}()

// ErrorClass returns the index in ErrorClasses of the SQLSTATE class
// in an ErrorResponse body (fields of a type byte and a NUL-terminated
// value): 1 (other) when the code was not captured or is unknown.
func ErrorClass(body []byte) uint8 {
	for len(body) > 0 && body[0] != 0 {
		typ := body[0]
		v, rest, ok := CString(body[1:])
		if !ok {
			break
		}
		if typ == 'C' {
			if len(v) != 5 {
				return 1
			}
			if i, ok := errorIndex[string(v[:2])]; ok {
				return i
			}
			return 1
		}
		body = rest
	}
	return 1
}
