package dnsproto

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func build(t testing.TB, h dnsmessage.Header, qtype dnsmessage.Type, answers int) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	name := dnsmessage.MustNewName("api.example.com.")
	if err := b.Question(dnsmessage.Question{Name: name, Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	if err := b.StartAnswers(); err != nil {
		t.Fatal(err)
	}
	for range answers {
		if err := b.AResource(dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{10, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParse(t *testing.T) {
	q := build(t, dnsmessage.Header{ID: 0x1234, RecursionDesired: true}, dnsmessage.TypeAAAA, 0)
	m, ok := Parse(q, false)
	if !ok || m.ID != 0x1234 || m.Response || QTypeNames[QType(m.QType)] != "AAAA" {
		t.Fatalf("query: %+v %v", m, ok)
	}
	r := build(t, dnsmessage.Header{ID: 0x1234, Response: true, RCode: dnsmessage.RCodeNameError}, dnsmessage.TypeA, 0)
	m, ok = Parse(r, false)
	if !ok || !m.Response || RCodeNames[RCode(m.RCode)] != "NXDOMAIN" || Failed(m.RCode) {
		t.Fatalf("NXDOMAIN response: %+v %v", m, ok)
	}
	r = build(t, dnsmessage.Header{ID: 7, Response: true, RCode: dnsmessage.RCodeServerFailure}, dnsmessage.TypeA, 0)
	if m, ok = Parse(r, false); !ok || !Failed(m.RCode) || RCodeNames[RCode(m.RCode)] != "SERVFAIL" {
		t.Fatalf("SERVFAIL response: %+v %v", m, ok)
	}
	r = build(t, dnsmessage.Header{ID: 8, Response: true}, dnsmessage.TypeA, 2)
	tcp := append(binary.BigEndian.AppendUint16(nil, uint16(len(r))), r...)
	if m, ok = Parse(tcp, true); !ok || m.Answers != 2 || m.ID != 8 {
		t.Fatalf("TCP response: %+v %v", m, ok)
	}
	// Not DNS, or cut before the question's type.
	for _, b := range [][]byte{
		nil, q[:11], q[:len(q)-3], []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), []byte("*1\r\n$4\r\nPING\r\n"),
		append([]byte{0, 1, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0}, q[12:]...), // opcode UPDATE
		append([]byte{0, 1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0}, q[12:]...),    // two questions
		append([]byte{0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0}, q[12:]...),    // a query with an answer
		append(append([]byte{}, q[:12]...), 64, 'a'),                     // label longer than 63
		append(append([]byte{}, q[:12]...), 0xc0, 12, 0, 1, 0, 1),        // pointer to itself
	} {
		if m, ok := Parse(b, false); ok {
			t.Errorf("Parse(%q) = %+v, want not DNS", b, m)
		}
	}
	if a := testing.AllocsPerRun(100, func() { Parse(q, false) }); a != 0 {
		t.Errorf("Parse allocates %v times", a)
	}
}

// FuzzParse: Parse never panics, and what it accepts agrees with
// x/net/dns/dnsmessage on the header and the first question whenever
// that parser accepts the message too.
func FuzzParse(f *testing.F) {
	f.Add(build(f, dnsmessage.Header{ID: 1}, dnsmessage.TypeA, 0))
	f.Add(build(f, dnsmessage.Header{ID: 2, Response: true}, dnsmessage.TypeA, 3))
	f.Add(build(f, dnsmessage.Header{ID: 3, Response: true, RCode: dnsmessage.RCodeRefused}, dnsmessage.TypeHTTPS, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Parse(b, true)
		m, ok := Parse(b, false)
		if !ok {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(b)
		if err != nil {
			return
		}
		q, err := p.Question()
		if err != nil {
			return
		}
		if h.ID != m.ID || h.Response != m.Response || uint8(h.RCode) != m.RCode || uint16(q.Type) != m.QType {
			t.Fatalf("Parse %+v, dnsmessage %+v %+v", m, h, q)
		}
	})
}
