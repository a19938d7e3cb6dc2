package pgproto

import (
	"encoding/binary"
	"strings"
	"testing"
)

// msg builds a message of type t with body.
func msg(t byte, body string) string {
	return string(t) + string(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))) + body
}

func TestMessages(t *testing.T) {
	for _, c := range []struct {
		in      string
		types   string
		want    string // types seen, with * for a cut one
		cut, ok bool
	}{
		{msg('Q', "SELECT 1\x00"), FrontendTypes, "Q", false, true},
		{msg('P', "s1\x00SELECT $1\x00\x00\x00") + msg('D', "Ss1\x00") + msg('S', ""), FrontendTypes, "PDS", false, true},
		{msg('T', "\x00\x01a\x00") + msg('D', "x") + msg('C', "SELECT 1\x00") + msg('Z', "I"), BackendTypes, "TDCZ", false, true},
		{(msg('Q', "SELECT 1234567890\x00"))[:10], FrontendTypes, "Q*", true, true},
		{msg('C', "SELECT 1\x00") + "Z\x00\x00", BackendTypes, "C", true, true},
		// Not PostgreSQL.
		{"Q\x00\x00\x00\x03", FrontendTypes, "", true, false},
		{"Qx", FrontendTypes, "", true, false},
		{"x\x00\x00\x00\x04", FrontendTypes, "", true, false},
		{"Q\x7f\xff\xff\xff", FrontendTypes, "", true, false},
		{msg('C', "x"), FrontendTypes + "", "C", false, true},
	} {
		var got strings.Builder
		n, cut, ok := Messages([]byte(c.in), c.types, func(typ byte, body []byte, whole bool) {
			got.WriteByte(typ)
			if !whole {
				got.WriteByte('*')
			}
		})
		if ok != c.ok || cut != c.cut || got.String() != c.want || n != len(strings.ReplaceAll(c.want, "*", "")) {
			t.Errorf("Messages(%q) = %d %q cut=%v ok=%v, want %q cut=%v ok=%v", c.in, n, got.String(), cut, ok, c.want, c.cut, c.ok)
		}
	}
}

func TestCommand(t *testing.T) {
	for q, want := range map[string]string{
		"SELECT 1":                             "SELECT",
		"  select * from t":                    "SELECT",
		"/* c */ -- x\n(SELECT 1)":             "SELECT",
		"insert into t values (1)":             "INSERT",
		"WITH x AS (SELECT 1) SELECT * FROM x": "WITH",
		"begin":                                "BEGIN",
		"checkpoint":                           "CHECKPOINT",
		"frobnicate":                           "OTHER",
		"averyveryverylongword":                "OTHER",
		"":                                     "OTHER",
		"/* unterminated":                      "OTHER",
		"123":                                  "OTHER",
	} {
		if got := CommandNames[Command([]byte(q))]; got != want {
			t.Errorf("Command(%q) = %s, want %s", q, got, want)
		}
	}
	if a := testing.AllocsPerRun(100, func() { Command([]byte("select 1")) }); a != 0 {
		t.Errorf("Command allocates %v times", a)
	}
}

func TestErrorClass(t *testing.T) {
	for body, want := range map[string]string{
		"SERROR\x00VERROR\x00C42P01\x00Mrelation does not exist\x00\x00": "42",
		"SERROR\x00C23505\x00\x00":                                       "23",
		"SERROR\x00CZZ999\x00\x00":                                       "other",
		"SERROR\x00C4":                                                   "other", // cut
		"SERROR\x00":                                                     "other",
	} {
		if got := ErrorClasses[ErrorClass([]byte(body))]; got != want {
			t.Errorf("ErrorClass(%q) = %s, want %s", body, got, want)
		}
	}
}

// FuzzPostgres feeds arbitrary captures to the decoders: they never
// panic, and every body they report lies within the input.
func FuzzPostgres(f *testing.F) {
	for _, s := range []string{
		msg('Q', "SELECT 1\x00"),
		msg('P', "s\x00INSERT INTO t VALUES ($1)\x00\x00\x00") + msg('B', "\x00s\x00\x00\x00") + msg('E', "\x00\x00\x00\x00\x00") + msg('S', ""),
		msg('E', "SERROR\x00C42P01\x00\x00") + msg('Z', "I"),
		msg('T', "\x00\x01a\x00") + msg('D', "x"),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, types := range []string{FrontendTypes, BackendTypes} {
			n, _, _ := Messages(b, types, func(typ byte, body []byte, _ bool) {
				if len(body) > len(b) {
					t.Fatalf("body of %d bytes from %d", len(body), len(b))
				}
				_ = ErrorClass(body)
				q, rest, _ := CString(body)
				_ = Command(q)
				_, _, _ = CString(rest)
			})
			if n > len(b) {
				t.Fatalf("%d messages in %d bytes", n, len(b))
			}
		}
		_ = Command(b)
	})
}
