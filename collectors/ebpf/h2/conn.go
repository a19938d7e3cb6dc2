package h2

import (
	"encoding/binary"
	"errors"

	"golang.org/x/net/http2/hpack"
)

// Preface is the client connection preface (RFC 9113, section 3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// initialTableSize is HPACK's initial dynamic table size (RFC 7541, 4.2).
const initialTableSize = 4096

// Frame types (RFC 9113, section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Frame flags.
const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// settingsHeaderTableSize is SETTINGS_HEADER_TABLE_SIZE's identifier.
const settingsHeaderTableSize = 0x1

// blockKind is what a header block is to the decoder.
type blockKind uint8

const (
	blockIgnore   blockKind = iota // decoded to keep HPACK in step, not looked at
	blockRequest                   // a tracked stream's request headers
	blockResponse                  // a tracked stream's response headers (or trailers-only)
	blockTrailers                  // a tracked stream's response trailers
)

// stream is a tracked stream: its exchange being filled in.
type stream struct {
	ex        Exchange
	responded bool // a final (non-1xx) response HEADERS was seen
	status    int  // :status of the block being decoded
	tpFields  int  // traceparent fields seen in the request
}

// dirState follows one direction of the connection.
type dirState struct {
	c       *Conn
	dec     *hpack.Decoder
	started bool
	client  bool // this direction carries the requests (it began with the preface)
	pre     int  // bytes of the preface matched
	// needSettings: the direction did not begin with the preface, so its
	// first frame must be the server's SETTINGS.
	needSettings bool

	// Frame being read: its header (hdrN bytes of it so far), and the
	// payload offset off of length.
	hdr     [9]byte
	hdrN    int
	inFrame bool
	typ     uint8
	flags   uint8
	sid     uint32
	length  uint32
	off     uint32
	ts      uint64 // timestamp of the transfer that carried the frame header
	// Fixed fields at the start of the payload (pad length, priority,
	// promised stream, error codes, a SETTINGS entry) are collected in
	// fix; fixLen of them. A header block fragment follows until fragEnd.
	fix     [8]byte
	fixLen  uint32
	fragEnd uint32

	// Header block being decoded, across HEADERS and CONTINUATION.
	inBlock        bool
	blockSID       uint32
	blockEndStream bool
	blockFirst     bool   // no fragment byte written yet
	blockTS        uint64 // timestamp of the HEADERS frame
	pend           []byte // block bytes gathered (fragmentChunk)
	kind           blockKind
	target         int32 // slab index of the stream for request and response blocks
	listSize       int
}

// Conn decodes one TCP connection. It is not safe for concurrent use; the
// collector feeds every connection from one goroutine.
type Conn struct {
	lim     Limits
	cnt     *Counters
	dirs    [2]dirState
	side    Side
	lost    bool
	closed  bool
	streams map[uint32]int32 // stream ID → slab index
	slab    []stream
	free    []int32
	last    uint32     // highest request stream ID seen
	out     []Exchange // exchanges completed during Feed
	reason  Reason     // why the connection was lost
	peerTab [2]uint32  // SETTINGS_HEADER_TABLE_SIZE announced by each direction's sender (0: not seen)
}

// NewConn returns a decoder for one connection. Drops are added to cnt,
// which may be shared by the collector's connections.
func NewConn(lim Limits, cnt *Counters) *Conn {
	c := &Conn{lim: lim.withDefaults(), cnt: cnt, streams: map[uint32]int32{}}
	for i := range c.dirs {
		d := &c.dirs[i]
		d.c = c
		d.dec = hpack.NewDecoder(initialTableSize, d.field)
		d.dec.SetAllowedMaxDynamicTableSize(c.lim.MaxTableSize)
		d.dec.SetMaxStringLength(c.lim.MaxStringLength)
	}
	return c
}

// Side is the traced process's role, known once the preface was seen.
func (c *Conn) Side() Side { return c.side }

// Lost reports whether the connection is lost, and why (the reason means
// nothing while it is not).
func (c *Conn) Lost() (bool, Reason) { return c.lost, c.reason }

// Streams is the number of streams tracked now (at most MaxStreams).
func (c *Conn) Streams() int { return len(c.streams) }

// PeerTableSize is the SETTINGS_HEADER_TABLE_SIZE last announced by the
// sender of dir's bytes (the table it lets the other side encode with), 0
// when none was seen. The decoder caps its own table at MaxTableSize
// whatever this says.
func (c *Conn) PeerTableSize(dir Direction) uint32 { return c.peerTab[dir&1] }

// Feed hands the decoder one read or write of the connection: data is the
// captured start of a transfer of total bytes (total < len(data) counts
// as len(data)); the bytes past data are skipped. Empty data with total n
// is a gap of n bytes, so a caller given pieces of a transfer at offsets
// feeds the pieces and the gaps between them in order. Skipped bytes are
// harmless only inside a frame payload the decoder does not need (DATA,
// PING, padding and the like); anywhere else they lose the connection
// (Gap). ts is the caller's
// timestamp of the transfer (kernel nanoseconds, say), copied into the
// exchanges. Exchanges completed by it are appended to dst, which is
// returned.
func (c *Conn) Feed(dst []Exchange, dir Direction, data []byte, total int, ts uint64) []Exchange {
	if c.lost || c.closed {
		return dst
	}
	c.out = dst
	d := &c.dirs[dir&1]
	d.feed(data, ts)
	if skip := total - len(data); skip > 0 && !c.lost {
		d.skip(uint64(skip), ts)
	}
	dst, c.out = c.out, nil
	return dst
}

// Close ends the connection: its open streams are counted unfinished.
func (c *Conn) Close() {
	if c.closed {
		return
	}
	c.closed = true
	if !c.lost {
		c.cnt[StreamUnfinished] += uint64(len(c.streams))
	}
	c.dropAll()
}

// Lose marks the connection lost for r (Overflow, Evicted: what the
// caller knows and the decoder cannot see), counting it once and its open
// streams as StreamLost; nothing more is decoded from it.
func (c *Conn) Lose(r Reason) {
	if !c.closed {
		c.lose(r)
	}
}

// lose marks the connection lost for r, counting it and its streams.
func (c *Conn) lose(r Reason) {
	if c.lost {
		return
	}
	c.lost, c.reason = true, r
	c.cnt[r]++
	c.cnt[StreamLost] += uint64(len(c.streams))
	c.dropAll()
}

func (c *Conn) dropAll() {
	clear(c.streams)
	c.slab, c.free = nil, nil
	for i := range c.dirs {
		c.dirs[i].dec, c.dirs[i].pend = nil, nil // of no more use
	}
}

// feed reads the bytes of one transfer.
func (d *dirState) feed(p []byte, ts uint64) {
	c := d.c
	if len(p) > 0 && !d.started {
		d.start(p[0])
	}
	for len(p) > 0 && !c.lost {
		if d.client && d.pre < len(Preface) {
			n := min(len(p), len(Preface)-d.pre)
			if string(p[:n]) != Preface[d.pre:d.pre+n] {
				c.lose(NoPreface)
				return
			}
			d.pre += n
			p = p[n:]
			if d.pre == len(Preface) {
				c.confirm(d)
			}
			continue
		}
		if !d.inFrame {
			n := copy(d.hdr[d.hdrN:], p)
			d.hdrN += n
			p = p[n:]
			if d.hdrN < len(d.hdr) {
				return
			}
			d.hdrN = 0
			d.ts = ts
			if !d.beginFrame() {
				return
			}
			if d.length == 0 {
				d.endFrame(ts)
			}
			continue
		}
		n := min(uint32(len(p)), d.length-d.off)
		d.payload(p[:n], ts)
		p = p[n:]
		if d.off == d.length && !c.lost {
			d.endFrame(ts)
		}
	}
}

// start decides, from its first byte, whether a direction begins with the
// preface (the client's) or must begin with a SETTINGS frame (the
// server's).
func (d *dirState) start(first byte) {
	c := d.c
	d.started = true
	other := &c.dirs[0]
	if other == d {
		other = &c.dirs[1]
	}
	switch {
	case first == Preface[0] && !(other.started && other.client):
		d.client = true
	case other.started && !other.client:
		c.lose(NoPreface) // neither direction began with the preface
	default:
		d.needSettings = true
	}
}

// confirm records that d sent the whole preface: the connection is HTTP/2
// from its start, and d's sender is the client.
func (c *Conn) confirm(d *dirState) {
	if d == &c.dirs[Write] {
		c.side = Client
	} else {
		c.side = Server
	}
}

// skip accounts for n bytes of d that were not captured. Only the rest of
// a frame payload the decoder does not need can be skipped.
func (d *dirState) skip(n uint64, ts uint64) {
	if !d.inFrame || d.hdrN > 0 || (d.client && d.pre < len(Preface)) {
		d.c.lose(Gap)
		return
	}
	if n > uint64(d.length-d.off) || d.off < d.fixLen || d.off < d.fragEnd || d.typ == frameSettings || d.typ == frameRSTStream {
		d.c.lose(Gap)
		return
	}
	d.off += uint32(n)
	if d.off == d.length {
		d.endFrame(ts)
	}
}

// beginFrame reads the frame header in d.hdr; false when the connection
// was lost over it.
func (d *dirState) beginFrame() bool {
	c := d.c
	h := d.hdr
	d.length = uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
	d.typ, d.flags = h[3], h[4]
	d.sid = binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)
	d.off, d.fixLen, d.fragEnd = 0, 0, 0
	d.inFrame = true
	if d.needSettings {
		if d.typ != frameSettings || d.flags&flagAck != 0 || d.sid != 0 {
			c.lose(NoPreface)
			return false
		}
		d.needSettings = false
	}
	if d.inBlock && (d.typ != frameContinuation || d.sid != d.blockSID) {
		c.lose(BadFrame) // a header block must be continued at once
		return false
	}
	ok := true
	switch d.typ {
	case frameData:
		ok = d.sid != 0
		if ok && d.flags&flagEndStream != 0 && !d.client {
			c.endStream(d.sid, d.ts, true)
		}
	case frameHeaders:
		if d.flags&flagPadded != 0 {
			d.fixLen++
		}
		if d.flags&flagPriority != 0 {
			d.fixLen += 5
		}
		ok = d.sid != 0 && d.fixLen <= d.length
		d.fragEnd = d.length
		if ok {
			d.beginBlock()
		}
	case framePriority:
		ok = d.sid != 0 && d.length == 5
	case frameRSTStream:
		ok = d.sid != 0 && d.length == 4
		d.fixLen = 4
	case frameSettings:
		ok = d.sid == 0 && d.length%6 == 0 && (d.flags&flagAck == 0 || d.length == 0)
	case framePushPromise:
		d.fixLen = 4
		if d.flags&flagPadded != 0 {
			d.fixLen++
		}
		ok = d.sid != 0 && d.fixLen <= d.length
		d.fragEnd = d.length
		if ok {
			d.beginBlock()
		}
	case framePing:
		ok = d.sid == 0 && d.length == 8
	case frameGoAway:
		ok = d.sid == 0 && d.length >= 8
		d.fixLen = 8
	case frameWindowUpdate:
		ok = d.length == 4
	case frameContinuation:
		ok = d.inBlock
		d.fragEnd = d.length
	}
	if !ok {
		c.lose(BadFrame)
	}
	return ok
}

// beginBlock starts the header block of a HEADERS or PUSH_PROMISE frame
// and decides what it is.
func (d *dirState) beginBlock() {
	c := d.c
	d.inBlock, d.blockSID, d.blockFirst, d.blockTS = true, d.sid, true, d.ts
	d.blockEndStream = d.typ == frameHeaders && d.flags&flagEndStream != 0
	d.kind, d.target, d.listSize = blockIgnore, -1, 0
	if d.typ != frameHeaders || c.side == SideUnknown {
		d.dec.SetEmitEnabled(false)
		return
	}
	i, tracked := c.streams[d.sid]
	switch {
	case d.client && tracked:
		// Request trailers: nothing in them is used.
	case d.client && d.sid > c.last && d.sid&1 == 1:
		c.last = d.sid
		if len(c.streams) >= c.lim.MaxStreams {
			c.cnt[StreamsOverLimit]++
			break
		}
		i = c.newStream(d.sid)
		d.kind, d.target = blockRequest, i
	case !d.client && tracked:
		d.kind, d.target = blockResponse, i
		if c.slab[i].responded {
			d.kind = blockTrailers
		}
		c.slab[i].status = 0
	}
	d.dec.SetEmitEnabled(d.kind != blockIgnore)
}

// newStream starts tracking stream id.
func (c *Conn) newStream(id uint32) int32 {
	var i int32
	if n := len(c.free); n > 0 {
		i, c.free = c.free[n-1], c.free[:n-1]
	} else {
		c.slab = append(c.slab, stream{})
		i = int32(len(c.slab) - 1)
	}
	c.slab[i] = stream{ex: Exchange{StreamID: id, Side: c.side, Method: "_OTHER", GRPCStatus: -1}}
	c.streams[id] = i
	return i
}

// payload reads bytes of the current frame's payload (at most what is
// left of it).
func (d *dirState) payload(b []byte, ts uint64) {
	c := d.c
	for len(b) > 0 && !c.lost {
		if d.typ == frameSettings {
			// Entries of six bytes, collected in fix.
			k := d.off % 6
			n := min(uint32(len(b)), 6-k)
			copy(d.fix[k:], b[:n])
			d.off += n
			b = b[n:]
			if k+n == 6 && binary.BigEndian.Uint16(d.fix[:2]) == settingsHeaderTableSize {
				c.peerTab[d.dirIndex()] = binary.BigEndian.Uint32(d.fix[2:6])
			}
			continue
		}
		if d.off < d.fixLen {
			n := min(uint32(len(b)), d.fixLen-d.off)
			copy(d.fix[d.off:], b[:n])
			d.off += n
			b = b[n:]
			if d.off == d.fixLen {
				d.fixed(ts)
			}
			continue
		}
		if d.off < d.fragEnd {
			n := min(uint32(len(b)), d.fragEnd-d.off)
			d.fragment(b[:n])
			d.off += n
			b = b[n:]
			continue
		}
		d.off += uint32(len(b)) // payload not needed, or padding
		return
	}
}

func (d *dirState) dirIndex() int {
	if d == &d.c.dirs[0] {
		return 0
	}
	return 1
}

// fixed handles the fixed fields at the start of a payload, once read.
func (d *dirState) fixed(ts uint64) {
	c := d.c
	switch d.typ {
	case frameHeaders, framePushPromise:
		if d.flags&flagPadded != 0 {
			pad := uint32(d.fix[0])
			if pad > d.length-d.fixLen {
				c.lose(BadFrame)
				return
			}
			d.fragEnd = d.length - pad
		}
	case frameRSTStream:
		if i, ok := c.streams[d.sid]; ok {
			s := &c.slab[i]
			s.ex.Reset, s.ex.ResetCode = true, binary.BigEndian.Uint32(d.fix[:4])
			c.complete(d.sid, i, ts, false)
		}
	case frameGoAway:
		if !d.client && c.side != SideUnknown {
			last := binary.BigEndian.Uint32(d.fix[:4]) & (1<<31 - 1)
			for id, i := range c.streams {
				if id > last {
					c.cnt[StreamRefused]++
					c.drop(id, i)
				}
			}
		}
	}
}

// fragmentChunk is how many bytes of a header block are gathered before
// they are handed to HPACK. HPACK's decoder parses a field again from its
// start on every Write until the field is complete, so a block arriving
// in small pieces (a read of a few bytes, or CONTINUATION frames of one
// byte each, as a hostile peer may send) would cost time quadratic in the
// field's length; gathered, it costs at most MaxStringLength/fragmentChunk
// passes per field.
const fragmentChunk = 4096

// fragment takes header block bytes. A block fragment that arrives whole
// (the common case) goes straight to HPACK; pieces are gathered in pend
// first.
func (d *dirState) fragment(b []byte) {
	last := d.off+uint32(len(b)) == d.fragEnd && d.flags&flagEndHeaders != 0
	if len(d.pend) == 0 && last {
		d.decode(b)
		return
	}
	d.pend = append(d.pend, b...)
	if len(d.pend) >= fragmentChunk || last {
		d.flushFragment()
	}
}

// flushFragment hands the gathered bytes to HPACK.
func (d *dirState) flushFragment() {
	if len(d.pend) > 0 {
		d.decode(d.pend)
		d.pend = d.pend[:0]
	}
	if cap(d.pend) > fragmentChunk*2 {
		d.pend = nil
	}
}

// decode hands header block bytes to HPACK, first checking the block's
// dynamic table size updates against the cap.
func (d *dirState) decode(b []byte) {
	c := d.c
	if d.blockFirst {
		d.blockFirst = false
		if over, _ := tableSizeUpdateOver(b, c.lim.MaxTableSize); over {
			c.lose(TableOverCap)
			return
		}
	}
	if _, err := d.dec.Write(b); err != nil {
		d.hpackFailed(err)
	}
}

func (d *dirState) hpackFailed(err error) {
	if errors.Is(err, hpack.ErrStringLength) {
		d.c.lose(StringOverLimit)
		return
	}
	d.c.lose(HPACKError)
}

// tableSizeUpdateOver reads the dynamic table size updates at the start of
// a header block (RFC 7541, 6.3) and reports whether one is above limit;
// complete is false when b ends inside one (HPACK then checks it against
// the same limit, reported as a decoding error).
func tableSizeUpdateOver(b []byte, limit uint32) (over, complete bool) {
	for len(b) > 0 && b[0]&0xe0 == 0x20 {
		v := uint64(b[0] & 0x1f)
		b = b[1:]
		if v == 0x1f {
			var m uint
			for {
				if len(b) == 0 || m > 28 {
					return m > 28, false
				}
				c := b[0]
				b = b[1:]
				v += uint64(c&0x7f) << m
				m += 7
				if c&0x80 == 0 {
					break
				}
			}
		}
		if v > uint64(limit) {
			return true, true
		}
	}
	return false, true
}

// endFrame finishes the current frame.
func (d *dirState) endFrame(ts uint64) {
	d.inFrame = false
	if (d.typ == frameHeaders || d.typ == framePushPromise || d.typ == frameContinuation) && d.flags&flagEndHeaders != 0 {
		d.endBlock(ts)
	}
}

// endBlock finishes a header block.
func (d *dirState) endBlock(ts uint64) {
	c := d.c
	d.inBlock = false
	if d.flushFragment(); c.lost {
		return
	}
	if err := d.dec.Close(); err != nil {
		d.hpackFailed(err)
		return
	}
	d.dec.SetEmitEnabled(true)
	if d.target < 0 {
		return
	}
	s := &c.slab[d.target]
	// Times are those of the transfer that carried the HEADERS frame.
	switch d.kind {
	case blockRequest:
		s.ex.Start = d.blockTS
	case blockResponse:
		if s.status == 0 || s.status >= 200 { // 1xx: informational, the response follows
			s.ex.Status, s.ex.Response, s.responded = s.status, d.blockTS, true
		}
	}
	if !d.client && d.blockEndStream {
		c.endStream(d.blockSID, ts, false)
	}
}

// field is HPACK's emit function: a decoded field of the current block.
func (d *dirState) field(f hpack.HeaderField) {
	c := d.c
	d.listSize += len(f.Name) + len(f.Value) + 32
	if d.listSize > c.lim.MaxHeaderListSize {
		c.cnt[HeaderListOverLimit]++
		d.dec.SetEmitEnabled(false)
		return
	}
	if d.target < 0 {
		return
	}
	s := &c.slab[d.target]
	switch d.kind {
	case blockRequest:
		switch f.Name {
		case ":method":
			s.ex.Method = methodName(f.Value)
		case ":path":
			s.ex.Path = bounded(f.Value, MaxPathLength)
		case ":authority":
			s.ex.Authority = bounded(f.Value, MaxAuthorityLength)
		case "content-type":
			s.ex.GRPC = isGRPCContentType(f.Value)
		case "traceparent":
			// W3C Trace Context: more than one is invalid.
			if s.tpFields++; s.tpFields == 1 && len(f.Value) <= MaxTraceparentLength {
				s.ex.Traceparent = f.Value
			} else {
				s.ex.Traceparent = ""
			}
		}
	case blockResponse, blockTrailers:
		switch f.Name {
		case ":status":
			if d.kind == blockResponse {
				s.status = parseStatus(f.Value)
			}
		case "grpc-status":
			s.ex.GRPCStatus = parseGRPCStatus(f.Value)
		case "grpc-message":
			s.ex.GRPCMessage = bounded(f.Value, MaxMessageLength)
		}
	}
}

// endStream is the response's END_STREAM on stream id (byData: on a DATA
// frame).
func (c *Conn) endStream(id uint32, ts uint64, byData bool) {
	if i, ok := c.streams[id]; ok {
		c.complete(id, i, ts, byData)
	}
}

// complete emits stream id's exchange and forgets the stream.
func (c *Conn) complete(id uint32, i int32, ts uint64, byData bool) {
	s := &c.slab[i]
	ex := s.ex
	ex.End = ts
	if ex.GRPC {
		ex.GRPCService, ex.GRPCMethod = splitGRPCPath(ex.Path)
		if ex.GRPCStatus < 0 {
			switch {
			case ex.Reset:
				ex.GRPCStatus = codeOfReset(ex.ResetCode)
			case ex.Status != 0 && ex.Status != 200:
				ex.GRPCStatus = codeOfHTTPStatus(ex.Status)
			case byData:
				ex.GRPCStatus = codeInternal // "server closed the stream without sending trailers"
			default:
				ex.GRPCStatus = codeUnknown
			}
		}
	} else {
		ex.GRPCStatus = -1
	}
	c.out = append(c.out, ex)
	c.drop(id, i)
}

// drop forgets stream id.
func (c *Conn) drop(id uint32, i int32) {
	delete(c.streams, id)
	c.slab[i] = stream{}
	c.free = append(c.free, i)
}
