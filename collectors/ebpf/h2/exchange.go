package h2

import (
	"strconv"
	"strings"

	"github.com/vigil-agent/vigil/collectors/ebpf/route"
)

// Direction is which way bytes went, seen from the traced process.
type Direction uint8

const (
	// Read is bytes the process received on the socket.
	Read Direction = iota
	// Write is bytes the process sent.
	Write
)

// Side is the traced process's role on the connection: the one that sent
// the client preface is the client.
type Side uint8

const (
	// SideUnknown is a connection whose preface was not seen yet.
	SideUnknown Side = iota
	// Client is a process that sent the preface (its requests are writes).
	Client
	// Server is a process that received it (its requests are reads).
	Server
)

func (s Side) String() string {
	switch s {
	case Client:
		return "client"
	case Server:
		return "server"
	}
	return "unknown"
}

// Limits bound what one connection may hold. Zero fields take their
// default (DefaultLimits).
type Limits struct {
	// MaxTableSize caps each direction's HPACK dynamic table, in HPACK's
	// bytes (name + value + 32 an entry), whatever the peer's
	// SETTINGS_HEADER_TABLE_SIZE allows. An encoder that sets its table
	// above it loses the connection (TableOverCap). Values below 4096,
	// HPACK's initial size, are raised to 4096: a smaller table than the
	// encoder's would decode wrong names.
	MaxTableSize uint32
	// MaxStringLength bounds one header name or value; a longer one loses
	// the connection (StringOverLimit), as the rest of its block cannot be
	// decoded.
	MaxStringLength int
	// MaxHeaderListSize bounds the decoded header list looked at per header
	// block (the sum of name + value + 32 per field, as
	// SETTINGS_MAX_HEADER_LIST_SIZE counts it); later fields of the block
	// are decoded without being looked at (HeaderListOverLimit).
	MaxHeaderListSize int
	// MaxStreams bounds the streams tracked at once per connection; later
	// requests are not tracked (StreamsOverLimit) until some end.
	MaxStreams int
}

// DefaultLimits are the limits used for zero fields: a 64 KiB dynamic
// table (the largest common peers announce; Go, grpc-go, nghttp2 and Netty
// encode with 4 KiB unless told more), 16 KiB strings, 64 KiB header lists
// and 256 streams. Worst case a connection holds about 2 × (64 + 32) KiB of
// HPACK state and 256 × 1 KiB of streams.
func DefaultLimits() Limits {
	return Limits{MaxTableSize: 65536, MaxStringLength: 16384, MaxHeaderListSize: 65536, MaxStreams: 256}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxTableSize == 0 {
		l.MaxTableSize = d.MaxTableSize
	}
	l.MaxTableSize = max(l.MaxTableSize, initialTableSize)
	if l.MaxStringLength <= 0 {
		l.MaxStringLength = d.MaxStringLength
	}
	if l.MaxHeaderListSize <= 0 {
		l.MaxHeaderListSize = d.MaxHeaderListSize
	}
	if l.MaxStreams <= 0 {
		l.MaxStreams = d.MaxStreams
	}
	return l
}

// Bounds of the strings an Exchange keeps.
const (
	MaxPathLength      = 512 // :path
	MaxAuthorityLength = 256 // :authority
	MaxMessageLength   = 128 // grpc-message
	MaxNameLength      = 128 // a gRPC service or method name
	// MaxTraceparentLength bounds a traceparent field that is kept (version
	// 00 is 55 bytes; later versions may append fields): a longer one is
	// not kept, since a cut one would not parse.
	MaxTraceparentLength = 256
)

// Exchange is one completed request and response (or reset) of a stream.
// Its strings are bounded (MaxPathLength and the like); labels built from
// it stay bounded per value, and their number is the collector's to cap,
// as for HTTP/1.x routes.
type Exchange struct {
	StreamID uint32
	Side     Side
	// Method is the :method, one of the methods of RFC 9110 and PATCH, or
	// "_OTHER" (OpenTelemetry's name for the rest).
	Method string
	// Path is the :path as sent (query included), cut to MaxPathLength;
	// Route folds it for labels.
	Path      string
	Authority string
	// Traceparent is the request's traceparent field (W3C Trace Context)
	// as sent, unchecked; empty without one, with more than one, or with
	// one longer than MaxTraceparentLength.
	Traceparent string
	// GRPC is set when the request's content-type is application/grpc
	// (with or without a +subtype); GRPCService and GRPCMethod then come
	// from the path "/<service>/<method>", or are "_OTHER" when it is not
	// of that form or a name is longer than MaxNameLength or has other
	// characters than letters, digits and "._-".
	GRPC        bool
	GRPCService string
	GRPCMethod  string
	// Status is the response's :status, 0 when none came (reset first).
	Status int
	// GRPCStatus is the gRPC status code (GRPCStatusName names it), -1 for
	// a request that is not gRPC. Without a grpc-status field it is
	// derived as grpc-go does: from the reset's error code, from a
	// :status other than 200, INTERNAL for a stream ended by DATA, and
	// UNKNOWN otherwise.
	GRPCStatus  int
	GRPCMessage string // grpc-message as sent (percent-encoded), cut to MaxMessageLength
	// Reset is set when a RST_STREAM ended the stream before its response
	// did; ResetCode is its HTTP/2 error code (8 is CANCEL).
	Reset     bool
	ResetCode uint32
	// Times, in the caller's timestamps (Feed's ts): the transfer that
	// carried the request's HEADERS, the first final (non-1xx) response
	// HEADERS (0 if none), and the end of the response (END_STREAM or
	// RST_STREAM).
	Start, Response, End uint64
}

// Route is the low-cardinality route of the path, folded as HTTP/1.x
// routes are (collectors/ebpf/route): query dropped, identifiers as {id},
// at most four segments.
func (e *Exchange) Route() string {
	_, r := route.Of(e.Path)
	return r
}

// GRPCStatusName is the gRPC status code's canonical name ("OK",
// "UNAVAILABLE", ...), "" for a request that is not gRPC.
func (e *Exchange) GRPCStatusName() string {
	return CodeName(e.GRPCStatus)
}

// codeNames are the gRPC status codes' names (grpc/doc/statuscodes.md).
var codeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// gRPC status codes the decoder derives itself.
const (
	codeOK                = 0
	codeCanceled          = 1
	codeUnknown           = 2
	codePermissionDenied  = 7
	codeResourceExhausted = 8
	codeUnimplemented     = 12
	codeInternal          = 13
	codeUnavailable       = 14
	codeUnauthenticated   = 16
)

// CodeName names a gRPC status code: its canonical name, "" for a
// negative code (not gRPC), and "UNKNOWN" for codes past the defined ones
// (as gRPC libraries treat them).
func CodeName(code int) string {
	switch {
	case code < 0:
		return ""
	case code < len(codeNames):
		return codeNames[code]
	}
	return "UNKNOWN"
}

// methodName maps a :method to a constant string, so method labels are
// bounded and cost no allocation.
func methodName(m string) string {
	switch m { // compared in place, no allocation
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "CONNECT":
		return "CONNECT"
	case "OPTIONS":
		return "OPTIONS"
	case "TRACE":
		return "TRACE"
	case "PATCH":
		return "PATCH"
	}
	return "_OTHER"
}

// splitGRPCPath splits "/<service>/<method>".
func splitGRPCPath(p string) (service, method string) {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	rest, ok := strings.CutPrefix(p, "/")
	if !ok {
		return "_OTHER", "_OTHER"
	}
	service, method, ok = strings.Cut(rest, "/")
	if !ok || !validName(service) || !validName(method) {
		return "_OTHER", "_OTHER"
	}
	return service, method
}

func validName(s string) bool {
	if s == "" || len(s) > MaxNameLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// isGRPCContentType reports whether a content-type is gRPC's:
// application/grpc, optionally followed by "+subtype" or ";params".
func isGRPCContentType(v string) bool {
	rest, ok := strings.CutPrefix(v, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// parseStatus reads a three-digit :status; 0 when it is not one.
func parseStatus(v string) int {
	if len(v) != 3 {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 {
		return 0
	}
	return n
}

// parseGRPCStatus reads grpc-status; a malformed one is UNKNOWN, as
// grpc-go reads it.
func parseGRPCStatus(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1<<16 {
		return codeUnknown
	}
	return n
}

// codeOfReset is grpc-go's mapping of an HTTP/2 error code that reset a
// stream to the gRPC status the client reports.
func codeOfReset(errCode uint32) int {
	switch errCode {
	case 0x3, 0xb: // FLOW_CONTROL_ERROR, ENHANCE_YOUR_CALM
		return codeResourceExhausted
	case 0x7: // REFUSED_STREAM
		return codeUnavailable
	case 0x8: // CANCEL
		return codeCanceled
	case 0xc: // INADEQUATE_SECURITY
		return codePermissionDenied
	}
	return codeInternal
}

// codeOfHTTPStatus is gRPC's mapping of an HTTP status (other than 200)
// without grpc-status (grpc/doc/http-grpc-status-mapping.md).
func codeOfHTTPStatus(status int) int {
	switch status {
	case 400:
		return codeInternal
	case 401:
		return codeUnauthenticated
	case 403:
		return codePermissionDenied
	case 404:
		return codeUnimplemented
	case 429, 502, 503, 504:
		return codeUnavailable
	}
	return codeUnknown
}

// bounded returns s cut to n bytes; a cut string is copied so that the
// exchange does not keep the decoder's larger one alive.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.Clone(s[:n])
}

// Reason is why something was not decoded. Connection reasons are counted
// once per connection, when it is marked lost; the others once per stream
// or header block.
type Reason uint8

const (
	// NoPreface: the capture did not begin with the client preface and a
	// SETTINGS frame from the server (started mid-connection, or not
	// HTTP/2). Connection.
	NoPreface Reason = iota
	// Gap: bytes were skipped where they were needed (a frame header, a
	// header block, a control frame). Connection.
	Gap
	// BadFrame: a frame that breaks HTTP/2's framing rules. Connection.
	BadFrame
	// HPACKError: a header block that HPACK cannot decode. Connection.
	HPACKError
	// TableOverCap: a dynamic table size update above MaxTableSize.
	// Connection.
	TableOverCap
	// StringOverLimit: a header name or value longer than MaxStringLength.
	// Connection.
	StringOverLimit
	// HeaderListOverLimit: a header block whose fields past
	// MaxHeaderListSize were not looked at.
	HeaderListOverLimit
	// StreamsOverLimit: a request not tracked because MaxStreams streams
	// were open.
	StreamsOverLimit
	// StreamLost: a tracked stream dropped because its connection was lost.
	StreamLost
	// StreamRefused: a tracked stream above the last stream ID of the
	// server's GOAWAY (not processed; clients retry it elsewhere).
	StreamRefused
	// StreamUnfinished: a tracked stream still open when the connection
	// was closed.
	StreamUnfinished
	// Overflow: the capture stopped following the connection (the eBPF
	// programs' frame walk met a header block longer than it sends, more
	// frames in one transfer than it walks, or bytes it could not read).
	// Connection; given to Lose.
	Overflow
	// Evicted: the connection's decoder was dropped to stay within the
	// collector's cap on connections. Connection; given to Lose.
	Evicted
	// NumReasons is the number of reasons.
	NumReasons
)

var reasonNames = [NumReasons]string{"no_preface", "gap", "bad_frame", "hpack_error", "table_over_cap",
	"string_over_limit", "header_list_over_limit", "streams_over_limit", "stream_lost", "stream_refused",
	"stream_unfinished", "overflow", "evicted"}

// String is the reason's metric label value.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Counters count what was not decoded, by reason. One Counters may be
// shared by many connections (on one goroutine).
type Counters [NumReasons]uint64
