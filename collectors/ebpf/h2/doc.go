// Package h2 decodes HTTP/2 and gRPC exchanges from the bytes of one TCP
// connection as the eBPF collector captures them: the successive reads and
// writes of one socket of one process, each possibly cut short (the kernel
// sends the first bytes of a transfer and its full size).
//
// A Conn is fed both directions of one connection in the order the process
// made its reads and writes. It recognises the client connection preface,
// follows the frames (HEADERS and CONTINUATION, DATA, RST_STREAM, GOAWAY,
// SETTINGS, PUSH_PROMISE; others are skipped by their length), decodes every
// header block with HPACK (golang.org/x/net/http2/hpack) to keep the
// connection's dynamic tables in step, and pairs each stream's request
// (:method, :path, :authority, content-type) with its response (:status, and
// grpc-status and grpc-message from the trailers). A completed exchange is
// returned as an Exchange; what could not be followed is counted by Reason.
//
// # Bounds
//
// Every resource a peer could inflate is bounded by Limits and each limit,
// when hit, is counted: the HPACK dynamic table of each direction
// (MaxTableSize, whatever the peer's SETTINGS_HEADER_TABLE_SIZE says), the
// length of one header name or value (MaxStringLength), the decoded header
// list looked at per block (MaxHeaderListSize: fields past it are still
// decoded, to keep the table in step, but not looked at), and the streams
// tracked at once (MaxStreams). Strings kept from a request are cut to a
// few hundred bytes.
//
// # Loss and recovery
//
// HPACK is stateful: one header block missed, or cut, leaves the decoder's
// dynamic table different from the encoder's, after which indexed fields
// can decode to the wrong names. The decoder therefore never guesses. A
// connection whose capture does not begin with the client preface (the
// agent started after the connection, or it is not HTTP/2), whose bytes were
// skipped anywhere but inside a frame payload that is not needed (DATA,
// PING, padding and the like), whose framing is invalid, or whose header
// block fails to decode, is marked lost: it is counted once by reason, its
// open streams are counted as lost, and nothing more is decoded from it. A
// lost connection never recovers; the next connection is decoded from its
// preface. Skipped bytes inside a DATA frame, by contrast, cost nothing: the
// frame's length is known, so the next frame header is found again.
package h2
