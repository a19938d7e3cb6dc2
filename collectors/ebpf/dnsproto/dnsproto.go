// Package dnsproto decodes DNS messages (RFC 1035) as the kernel would
// capture them for the eBPF collector: the first bytes of a UDP datagram,
// or of a TCP stream's message after its two-byte length. It reads the
// header and the first question only, bounds every name, and tells a
// plausible DNS query or response from other bytes, so that a transfer the
// kernel's quick check let through can be rejected. It does not allocate.
//
// The collector feeds it the datagrams and TCP transfers the kernel sends
// as DNS (bpf/dns.h, dns_linux.go); see docs/ebpf.md, DNS.
package dnsproto

import "encoding/binary"

// HeaderLen is the size of a DNS header.
const HeaderLen = 12

// Message is what the collector uses of a DNS message.
type Message struct {
	ID        uint16
	Response  bool
	Truncated bool   // TC: the answer did not fit (the resolver retries over TCP)
	RCode     uint8  // the header's 4-bit response code (NOERROR 0, SERVFAIL 2, NXDOMAIN 3, …)
	QType     uint16 // the first question's type (A 1, AAAA 28, …)
	Answers   uint16 // ANCOUNT
}

// maxLabels bounds the labels of a name (a name is at most 255 bytes, so
// at most 127 labels).
const maxLabels = 127

// Parse reads a DNS message at the start of b, a UDP payload, or with tcp
// a TCP message with its two-byte length first. ok is false when b is not
// a plausible standard query or response to one: a header shorter than 12
// bytes, an opcode other than QUERY, the reserved Z bit set, not exactly
// one question, a query that carries answers, or a first question name
// that is malformed or cut off.
func Parse(b []byte, tcp bool) (m Message, ok bool) {
	if tcp {
		if len(b) < 2 {
			return m, false
		}
		if l := int(binary.BigEndian.Uint16(b)); l < HeaderLen {
			return m, false
		}
		b = b[2:]
	}
	if len(b) < HeaderLen {
		return m, false
	}
	flags := binary.BigEndian.Uint16(b[2:])
	m.ID = binary.BigEndian.Uint16(b)
	m.Response = flags&0x8000 != 0
	opcode := (flags >> 11) & 0xf
	m.Truncated = flags&0x0200 != 0
	z := flags & 0x0040
	m.RCode = uint8(flags & 0xf)
	qd := binary.BigEndian.Uint16(b[4:])
	m.Answers = binary.BigEndian.Uint16(b[6:])
	ns := binary.BigEndian.Uint16(b[8:])
	if opcode != 0 || z != 0 || qd != 1 {
		return m, false
	}
	if !m.Response && (m.Answers != 0 || ns != 0 || m.RCode != 0) {
		return m, false
	}
	i, ok := skipName(b, HeaderLen)
	if !ok || i+4 > len(b) {
		return m, false
	}
	m.QType = binary.BigEndian.Uint16(b[i:])
	class := binary.BigEndian.Uint16(b[i+2:])
	if m.QType == 0 || (class != 1 && class != 3 && class != 254 && class != 255) { // IN, CH, NONE, ANY
		return m, false
	}
	return m, true
}

// skipName returns the index after the name at b[i:]: labels of 1 to 63
// bytes ending in a zero byte, or in a compression pointer to an earlier
// offset (never followed, only checked).
func skipName(b []byte, i int) (int, bool) {
	total := 0
	for range maxLabels + 1 {
		if i >= len(b) {
			return 0, false
		}
		l := int(b[i])
		switch {
		case l == 0:
			return i + 1, true // the root name "." (total 0) is a valid question too
		case l&0xc0 == 0xc0:
			if i+1 >= len(b) {
				return 0, false
			}
			if off := int(binary.BigEndian.Uint16(b[i:]) & 0x3fff); off >= i || off < HeaderLen {
				return 0, false
			}
			return i + 2, true
		case l > 63:
			return 0, false
		}
		total += l + 1
		if total > 255 {
			return 0, false
		}
		i += 1 + l
	}
	return 0, false
}

// QTypeNames are the query types counted by name; any other is "other".
var QTypeNames = [...]string{"other", "A", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "AAAA", "SRV", "NAPTR", "DS",
	"DNSKEY", "SVCB", "HTTPS", "CAA", "ANY"}

// QType returns the index in QTypeNames of a query type, 0 (other) for
// the types it does not name.
func QType(t uint16) uint8 {
	switch t {
	case 1:
		return 1
	case 2:
		return 2
	case 5:
		return 3
	case 6:
		return 4
	case 12:
		return 5
	case 15:
		return 6
	case 16:
		return 7
	case 28:
		return 8
	case 33:
		return 9
	case 35:
		return 10
	case 43:
		return 11
	case 48:
		return 12
	case 64:
		return 13
	case 65:
		return 14
	case 257:
		return 15
	case 255:
		return 16
	}
	return 0
}

// RCodeNames are the response codes of the header (RFC 1035, 2136), by
// value; values 11 to 15 are "other".
var RCodeNames = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
	"NXRRSET", "NOTAUTH", "NOTZONE", "other"}

// RCode returns the index in RCodeNames of a header response code.
func RCode(c uint8) uint8 {
	if int(c) < len(RCodeNames)-1 {
		return c
	}
	return uint8(len(RCodeNames) - 1)
}

// Failed reports whether a response code is a failure of the lookup for
// the resolver's caller: anything but NOERROR and NXDOMAIN (a name that
// does not exist is an answer, not a failure of the resolver).
func Failed(c uint8) bool { return c != 0 && c != 3 }
