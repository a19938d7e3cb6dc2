//go:build linux

package ebpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"
)

// The generated types are named after the C structs.
type (
	tcpEvent  = vigilVigilTcpEvent
	procEvent = vigilVigilProcEvent
	httpEvent = vigilVigilHttpEvent
)

var (
	tcpEventSize  = binary.Size(tcpEvent{})
	procEventSize = binary.Size(procEvent{})
	httpEventSize = binary.Size(httpEvent{})
)

func init() {
	// decodeInto copies samples straight into the generated structs, which
	// is only right when Go lays them out exactly like the kernel (bpf2go
	// adds explicit padding fields for that).
	if int(unsafe.Sizeof(tcpEvent{})) != tcpEventSize || int(unsafe.Sizeof(procEvent{})) != procEventSize ||
		int(unsafe.Sizeof(httpEvent{})) != httpEventSize || int(unsafe.Sizeof(cgroupEvent{})) != cgroupEventSize {
		panic("ebpf: generated event types have implicit padding")
	}
	// decodeEvent tells the events ring's samples apart by size.
	if tcpEventSize == procEventSize || cgroupEventSize == tcpEventSize || cgroupEventSize == procEventSize {
		panic("ebpf: two event types on the events ring have the same size")
	}
}

// decodeInto copies a sample of exactly the struct's size into *v, in the
// host's byte order like the kernel wrote it. A reflective decoder costs
// tens of microseconds for the HTTP event's payload array.
func decodeInto[T any](b []byte, v *T) {
	copy(unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v)), b)
}

// Kinds of events, as in bpf/tcp.h and bpf/process.h.
const (
	tcpConnect       = 1
	tcpConnectFail   = 2
	tcpAccept        = 3
	tcpClose         = 4
	tcpListen        = 5
	tcpRetransmit    = 6
	tcpResetSent     = 7
	tcpResetReceived = 8

	procExec = 1
	procExit = 2
	procOOM  = 3

	httpRead  = 0
	httpWrite = 1

	afInet  = 2
	afInet6 = 10
)

// decodeEvent decodes one sample from the events ring buffer: a TCP, a
// process or a cgroup event, told apart by size (the kernel always submits exactly one
// struct). Anything else is an error and nothing is returned.
func decodeEvent(b []byte) (any, error) {
	switch len(b) {
	case tcpEventSize:
		var e tcpEvent
		decodeInto(b, &e)
		if e.Kind < tcpConnect || e.Kind > tcpResetReceived {
			return nil, fmt.Errorf("tcp event: unknown kind %d", e.Kind)
		}
		if e.Family != afInet && e.Family != afInet6 {
			return nil, fmt.Errorf("tcp event: unknown address family %d", e.Family)
		}
		return &e, nil
	case procEventSize:
		var e procEvent
		decodeInto(b, &e)
		if e.Kind < procExec || e.Kind > procOOM {
			return nil, fmt.Errorf("process event: unknown kind %d", e.Kind)
		}
		return &e, nil
	case cgroupEventSize:
		var e cgroupEvent
		decodeInto(b, &e)
		if e.Kind != cgroupMkdir && e.Kind != cgroupRmdir {
			return nil, fmt.Errorf("cgroup event: unknown kind %d", e.Kind)
		}
		return &e, nil
	}
	return nil, fmt.Errorf("event sample of %d bytes matches no event type (tcp %d, process %d, cgroup %d)",
		len(b), tcpEventSize, procEventSize, cgroupEventSize)
}

// httpHeaderSize is the size of an HTTP event without its data.
var httpHeaderSize = int(unsafe.Offsetof(httpEvent{}.Data))

// decodeHTTPEvent decodes one sample from the HTTP ring buffer: the
// event's header followed by exactly its captured bytes (the kernel leaves
// the rest of data out). Only e.Data[:e.Captured] is valid afterwards.
// Family 0 (no socket fields) is valid for responses only; the handler
// checks that.
func decodeHTTPEvent(b []byte, e *httpEvent) error {
	if len(b) < httpHeaderSize || len(b) > httpEventSize {
		return fmt.Errorf("http event sample of %d bytes, want %d to %d", len(b), httpHeaderSize, httpEventSize)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(e)), httpEventSize), b)
	if int(e.Captured) > len(e.Data) {
		return fmt.Errorf("http event: captured %d bytes, more than the %d-byte buffer", e.Captured, len(e.Data))
	}
	if len(b) < httpHeaderSize+int(e.Captured) {
		return fmt.Errorf("http event sample of %d bytes is shorter than its %d captured bytes", len(b), e.Captured)
	}
	if e.Dir != httpRead && e.Dir != httpWrite {
		return fmt.Errorf("http event: unknown direction %d", e.Dir)
	}
	if e.Family != afInet && e.Family != afInet6 && e.Family != 0 {
		return fmt.Errorf("http event: unknown address family %d", e.Family)
	}
	if e.Proto >= protoCount {
		return fmt.Errorf("http event: unknown protocol %d", e.Proto)
	}
	return nil
}

func addrPort(family uint8, addr [16]uint8, port uint16) netip.AddrPort {
	var a netip.Addr
	if family == afInet {
		a = netip.AddrFrom4([4]byte(addr[:4]))
	} else {
		a = netip.AddrFrom16(addr).Unmap()
	}
	return netip.AddrPortFrom(a, port)
}

func commString(c [16]int8) string {
	b := make([]byte, 0, len(c))
	for _, ch := range c {
		if ch == 0 {
			break
		}
		b = append(b, byte(ch))
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}
