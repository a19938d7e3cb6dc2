// Package redisproto decodes Redis (RESP2 and RESP3) as the kernel
// captures it for the eBPF collector: the first bytes of a read or write.
// Commands are RESP arrays of bulk strings; replies are any RESP value.
// The decoders read only what was captured, never index past it, bound
// every length and nesting depth, and report a value cut by the end of the
// capture instead of guessing what follows. They do not allocate.
package redisproto

// maxRESPLine bounds a RESP header or simple line the decoder looks at.
const maxRESPLine = 256

// maxRESPDepth bounds the nesting of aggregates (arrays, maps, sets,
// pushes, attributes) a reply is walked through.
const maxRESPDepth = 8

// maxRESPItems bounds the values one walk visits (aggregates can declare
// millions of elements; the capture holds at most a few hundred).
const maxRESPItems = 1024

// maxRESPBulk bounds a bulk length (Redis's proto-max-bulk-len is 512 MB).
const maxRESPBulk = 512 << 20

// respStatus is how the walk of one value ended.
type respStatus uint8

const (
	respDone respStatus = iota // the value ends within the capture
	respCut                    // the capture ends inside the value
	respBad                    // not RESP
)

// respLine returns the bytes of the line at b[i:] before its CRLF and the
// index after the CRLF. cut is set when b ends before the CRLF; bad when
// the line is longer than maxRESPLine or holds a lone CR or LF.
func respLine(b []byte, i int) (line []byte, next int, st respStatus) {
	for j := i; j < len(b); j++ {
		if j-i > maxRESPLine {
			return nil, 0, respBad
		}
		switch b[j] {
		case '\r':
			if j+1 >= len(b) {
				return nil, 0, respCut
			}
			if b[j+1] != '\n' {
				return nil, 0, respBad
			}
			return b[i:j], j + 2, respDone
		case '\n':
			return nil, 0, respBad
		}
	}
	if len(b)-i > maxRESPLine {
		return nil, 0, respBad
	}
	return nil, 0, respCut
}

// respInt parses a RESP integer: an optional sign and 1 to 18 digits.
func respInt(line []byte) (int64, bool) {
	neg := false
	if len(line) > 0 && (line[0] == '-' || line[0] == '+') {
		neg = line[0] == '-'
		line = line[1:]
	}
	if len(line) == 0 || len(line) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// Commands calls fn with the name of each command (a RESP array of
// bulk strings, the form every client library and redis-cli send) from the
// start of b, the captured bytes of one read or write. It stops at the
// first command whose name is cut off or whose arguments run past b (that
// one is still reported when its name is whole: a pipeline's commands past
// the capture are not seen). ok is false when b does not start with a
// command, so the transfer is not Redis.
func Commands(b []byte, fn func(name []byte)) (n int, ok bool) {
	i := 0
	for i < len(b) {
		if b[i] != '*' {
			return n, n > 0
		}
		line, j, st := respLine(b, i+1)
		if st != respDone {
			return n, n > 0 && st == respCut
		}
		args, valid := respInt(line)
		if !valid || args < 1 || args > 1<<20 {
			return n, n > 0
		}
		name, j, st := respBulk(b, j)
		if st != respDone || len(name) == 0 {
			return n, n > 0 && st == respCut
		}
		fn(name)
		n++
		for a := int64(1); a < args; a++ {
			if j >= len(b) {
				return n, true
			}
			if b[j] != '$' {
				return n, true // not a well-formed command; what came before was
			}
			_, j, st = respBulk(b, j)
			if st != respDone {
				return n, true
			}
		}
		i = j
	}
	return n, true
}

// respBulk reads the bulk string ($<len>CRLF<bytes>CRLF) at b[i:] and
// returns its bytes and the index after it. A bulk string longer than
// what is left of b is cut (its bytes are not returned).
func respBulk(b []byte, i int) (data []byte, next int, st respStatus) {
	if i >= len(b) {
		return nil, 0, respCut
	}
	if b[i] != '$' {
		return nil, 0, respBad
	}
	line, j, st := respLine(b, i+1)
	if st != respDone {
		return nil, 0, st
	}
	l, ok := respInt(line)
	if !ok || l < 0 || l > maxRESPBulk {
		return nil, 0, respBad
	}
	end := int64(j) + l
	if end+2 > int64(len(b)) {
		return nil, 0, respCut
	}
	if b[end] != '\r' || b[end+1] != '\n' {
		return nil, 0, respBad
	}
	return b[j:end], int(end) + 2, respDone
}

// Reply is one top-level reply found by Replies.
type Reply struct {
	// ErrCode is the error's code (the first word of a simple or blob
	// error: ERR, WRONGTYPE, …), empty for other replies. A blob error
	// whose text was cut off has the part that was captured.
	ErrCode []byte
	// Push is set for a RESP3 Push (out-of-band data such as a pub/sub
	// message), which answers no command.
	Push bool
}

// Replies calls fn for each top-level reply at the start of b, the
// captured bytes of one read or write. A reply cut by the end of b is
// reported (its type is known) and ends the walk. cut tells whether the
// walk stopped inside a reply (or at bytes that are not RESP after some
// replies) rather than exactly at the end of b; ok is false when b does
// not start with a reply, so the transfer is not Redis.
func Replies(b []byte, fn func(Reply)) (n int, cut, ok bool) {
	i, items := 0, 0
	for i < len(b) {
		if b[i] == '|' { // an attribute: metadata of the reply that follows
			next, st := respSkip(b, i, 0, &items)
			if st != respDone {
				return n, true, n > 0 || st == respCut
			}
			i = next
			continue
		}
		var r Reply
		switch b[i] {
		case '-':
			line, _, st := respLine(b, i+1)
			if st == respBad {
				return n, true, n > 0
			}
			if st == respCut {
				line = b[i+1:]
			}
			r.ErrCode = firstWord(line)
			if len(r.ErrCode) == 0 {
				return n, true, n > 0
			}
		case '!':
			_, j, st := respLine(b, i+1)
			if st == respDone {
				r.ErrCode = firstWord(b[j:min(len(b), j+maxRESPLine)])
			}
			if len(r.ErrCode) == 0 {
				r.ErrCode = []byte("ERR")
			}
		case '>':
			r.Push = true
		}
		next, st := respSkip(b, i, 0, &items)
		if st == respBad {
			return n, true, n > 0
		}
		fn(r)
		n++
		if st == respCut {
			return n, true, true
		}
		i = next
	}
	return n, false, n > 0
}

// firstWord returns b up to its first space, CR or LF.
func firstWord(b []byte) []byte {
	for i, c := range b {
		if c == ' ' || c == '\r' || c == '\n' {
			return b[:i]
		}
	}
	return b
}

// respSkip walks the RESP value at b[i:] and returns the index after it.
// items counts the values visited, across calls, against maxRESPItems.
func respSkip(b []byte, i, depth int, items *int) (int, respStatus) {
	if i >= len(b) {
		return 0, respCut
	}
	if *items++; *items > maxRESPItems || depth > maxRESPDepth {
		return 0, respBad
	}
	t := b[i]
	if !respType(t) {
		return 0, respBad
	}
	line, j, st := respLine(b, i+1)
	if st != respDone {
		return 0, st
	}
	switch t {
	case '+', '-':
		return j, respDone
	case ':', '(':
		if _, ok := respInt(line); !ok && t == ':' {
			return 0, respBad
		}
		if t == '(' && !digits(line) {
			return 0, respBad
		}
		return j, respDone
	case ',':
		if len(line) == 0 {
			return 0, respBad
		}
		return j, respDone
	case '_':
		if len(line) != 0 {
			return 0, respBad
		}
		return j, respDone
	case '#':
		if len(line) != 1 || (line[0] != 't' && line[0] != 'f') {
			return 0, respBad
		}
		return j, respDone
	case '$', '!', '=':
		l, ok := respInt(line)
		if !ok || l < -1 || l > maxRESPBulk || (l == -1 && t != '$') {
			return 0, respBad
		}
		if l == -1 {
			return j, respDone // RESP2 null bulk string
		}
		end := int64(j) + l
		if end+2 > int64(len(b)) {
			return 0, respCut
		}
		if b[end] != '\r' || b[end+1] != '\n' {
			return 0, respBad
		}
		return int(end) + 2, respDone
	case '*', '%', '~', '>', '|':
		l, ok := respInt(line)
		if !ok || l < -1 || l > 1<<24 || (l == -1 && t != '*') {
			return 0, respBad
		}
		if t == '%' || t == '|' {
			l *= 2
		}
		for k := int64(0); k < l; k++ {
			if j, st = respSkip(b, j, depth+1, items); st != respDone {
				return 0, st
			}
		}
		return j, respDone
	}
	return 0, respBad
}

// respType reports whether t is a RESP2 or RESP3 type byte.
func respType(t byte) bool {
	switch t {
	case '+', '-', ':', '(', ',', '_', '#', '$', '!', '=', '*', '%', '~', '>', '|':
		return true
	}
	return false
}

// digits reports whether s is an optional minus sign and one or more
// decimal digits (a RESP3 big number).
func digits(s []byte) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// CommandNames are the commands counted by name; any other command
// is counted as "other", so the label stays bounded whatever clients send.
var CommandNames = [...]string{"other",
	"APPEND", "AUTH", "BLMOVE", "BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX", "CLIENT", "CLUSTER", "COMMAND",
	"CONFIG", "COPY", "DBSIZE", "DECR", "DECRBY", "DEL", "DISCARD", "DUMP", "ECHO", "EVAL", "EVALSHA",
	"EVAL_RO", "EVALSHA_RO", "EXEC", "EXISTS", "EXPIRE", "EXPIREAT", "FCALL", "FLUSHALL", "FLUSHDB",
	"FUNCTION", "GEOADD", "GEODIST", "GEOSEARCH", "GET", "GETDEL", "GETEX", "GETRANGE", "GETSET",
	"HDEL", "HELLO", "HEXISTS", "HGET", "HGETALL", "HINCRBY", "HINCRBYFLOAT", "HKEYS", "HLEN", "HMGET",
	"HMSET", "HSCAN", "HSET", "HSETNX", "HVALS", "INCR", "INCRBY", "INCRBYFLOAT", "INFO", "KEYS",
	"LINDEX", "LINSERT", "LLEN", "LMOVE", "LPOP", "LPOS", "LPUSH", "LRANGE", "LREM", "LSET", "LTRIM",
	"MGET", "MSET", "MSETNX", "MULTI", "OBJECT", "PERSIST", "PEXPIRE", "PFADD", "PFCOUNT", "PING",
	"PSETEX", "PSUBSCRIBE", "PTTL", "PUBLISH", "PUNSUBSCRIBE", "QUIT", "RENAME", "RESET", "RPOP",
	"RPOPLPUSH", "RPUSH", "SADD", "SCAN", "SCARD", "SCRIPT", "SDIFF", "SELECT", "SET", "SETEX", "SETNX",
	"SETRANGE", "SINTER", "SISMEMBER", "SMEMBERS", "SMISMEMBER", "SMOVE", "SPOP", "SRANDMEMBER", "SREM",
	"SSCAN", "STRLEN", "SUBSCRIBE", "SUNION", "TIME", "TOUCH", "TTL", "TYPE", "UNLINK", "UNSUBSCRIBE",
	"UNWATCH", "WAIT", "WATCH", "XACK", "XADD", "XAUTOCLAIM", "XCLAIM", "XDEL", "XGROUP", "XINFO", "XLEN",
	"XPENDING", "XRANGE", "XREAD", "XREADGROUP", "XREVRANGE", "XTRIM", "ZADD", "ZCARD", "ZCOUNT",
	"ZINCRBY", "ZMSCORE", "ZPOPMAX", "ZPOPMIN", "ZRANGE", "ZRANGEBYSCORE", "ZRANK", "ZREM",
	"ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZREVRANK", "ZSCAN", "ZSCORE",
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

// Command returns the index in CommandNames of a command name
// as sent (commands are case-insensitive), 0 (other) for names it does
// not know.
func Command(name []byte) uint16 {
	var buf [20]byte
	if len(name) > len(buf) {
		return 0
	}
	for i, c := range name {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[i] = c
	}
	return commandIndex[string(buf[:len(name)])] // no allocation
}

// ErrorNames are the error codes counted by name (the codes Redis
// itself sends); any other code is "other". Index 0 is a reply without
// error.
var ErrorNames = [...]string{"none", "other",
	"ERR", "WRONGTYPE", "NOAUTH", "NOPERM", "WRONGPASS", "MOVED", "ASK", "BUSY", "BUSYKEY", "BUSYGROUP",
	"LOADING", "READONLY", "NOSCRIPT", "EXECABORT", "OOM", "CROSSSLOT", "TRYAGAIN", "CLUSTERDOWN",
	"MASTERDOWN", "MISCONF", "NOREPLICAS", "NOGROUP", "NOPROTO", "UNBLOCKED", "UNKILLABLE", "NOTBUSY",
}

var errorIndex = func() map[string]uint8 {
	m := make(map[string]uint8, len(ErrorNames))
	for i, n := range ErrorNames {
		if i > 1 {
			m[n] = uint8(i)
		}
	}
	return m
}()

// Error returns the index in ErrorNames of an error code: 0 for
// none, 1 for a code it does not know.
func Error(code []byte) uint8 {
	if len(code) == 0 {
		return 0
	}
	if i, ok := errorIndex[string(code)]; ok {
		return i
	}
	return 1
}
