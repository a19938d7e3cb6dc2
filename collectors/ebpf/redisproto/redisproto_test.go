package redisproto

import (
	"strings"
	"testing"
)

func TestRedisCommands(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"*1\r\n$4\r\nPING\r\n", []string{"PING"}, true},
		{"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", []string{"set", "GET"}, true},
		// A pipeline cut by the end of the capture: the cut command counts
		// when its name is whole.
		{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$4\r\nINCR\r\n$10\r\nabc", []string{"GET", "INCR"}, true},
		{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$4\r\nIN", []string{"GET"}, true},
		{"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000\r\nxxxx", []string{"SET"}, true},
		// Not Redis: the kernel's two-byte check lets these through.
		{"*1 is not RESP", nil, false},
		{"*2\r\n:1\r\n:2\r\n", nil, false},
		{"*0\r\n", nil, false},
		{"*1\r\n$0\r\n\r\n", nil, false},
		{"*1\r\n$4\r\nPINGxx", nil, false},
		{"*1\r\n$-1\r\n", nil, false},
		{"*9999999999999999999\r\n", nil, false},
		{"*1\r", nil, false},
	} {
		var got []string
		n, ok := Commands([]byte(c.in), func(name []byte) { got = append(got, string(name)) })
		if ok != c.ok || n != len(got) || strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("Commands(%q) = %v %v %v, want %v %v", c.in, n, got, ok, c.want, c.ok)
		}
	}
}

func TestRedisReplies(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    string // error codes, "-" for none, "push" for pushes
		cut, ok bool
	}{
		{"+OK\r\n", "-", false, true},
		{"+OK\r\n:1\r\n$-1\r\n_\r\n", "-,-,-,-", false, true},
		{"-WRONGTYPE Operation against a key\r\n", "WRONGTYPE", false, true},
		{"-ERR unknown command 'X'\r\n+OK\r\n", "ERR,-", false, true},
		{"-ERR unknown comm", "ERR", true, true},
		{"$5\r\nhello\r\n", "-", false, true},
		{"$2000\r\nxxxxx", "-", true, true},
		{"*2\r\n$1\r\na\r\n*-1\r\n", "-", false, true},
		{"%1\r\n+server\r\n+redis\r\n", "-", false, true},
		{">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n+OK\r\n", "push,-", false, true},
		{"|1\r\n+ttl\r\n:3\r\n:1\r\n", "-", false, true},
		{"!21\r\nSYNTAX invalid syntax\r\n", "SYNTAX", false, true},
		{",3.14\r\n#t\r\n(12345678901234567890\r\n=15\r\ntxt:Some string\r\n", "-,-,-,-", false, true},
		{"~2\r\n:1\r\n:2\r\n", "-", false, true},
		// Not Redis.
		{":x\r\n", "", true, false},
		{"+no line end", "-", true, true}, // cut: a simple string may go on
		{"#x\r\n", "", true, false},
		{"_x\r\n", "", true, false},
		{"%1\r\n+a\r\n", "-", true, true},
		{"$5\r\nhelloXY", "", true, false},
		{"+OK\r\nnot resp", "-", true, true},
	} {
		var got []string
		n, cut, ok := Replies([]byte(c.in), func(r Reply) {
			switch {
			case r.Push:
				got = append(got, "push")
			case r.ErrCode != nil:
				got = append(got, string(r.ErrCode))
			default:
				got = append(got, "-")
			}
		})
		if ok != c.ok || cut != c.cut || n != len(got) || strings.Join(got, ",") != c.want {
			t.Errorf("Replies(%q) = %d %v cut=%v ok=%v, want %q cut=%v ok=%v", c.in, n, got, cut, ok, c.want, c.cut, c.ok)
		}
	}
}

func TestRedisLabels(t *testing.T) {
	if got := CommandNames[Command([]byte("hGetAll"))]; got != "HGETALL" {
		t.Errorf("hGetAll: %q", got)
	}
	for _, name := range []string{"NOSUCHCOMMAND", "", "averyveryverylongcommandname", "GET\x00"} {
		if got := Command([]byte(name)); got != 0 {
			t.Errorf("%q: %q, want other", name, CommandNames[got])
		}
	}
	if ErrorNames[Error([]byte("WRONGTYPE"))] != "WRONGTYPE" || ErrorNames[Error([]byte("MYERR"))] != "other" ||
		Error(nil) != 0 {
		t.Error("Error")
	}
	if allocs := testing.AllocsPerRun(100, func() { Command([]byte("get")) }); allocs != 0 {
		t.Errorf("Command allocates %v times", allocs)
	}
}

// FuzzRedis feeds arbitrary captures to both decoders: they never panic,
// never report more values than bytes, and return command names that lie
// within the input.
func FuzzRedis(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$4\r\nPING\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000\r\nxx", "+OK\r\n", "-ERR x\r\n",
		"%2\r\n+a\r\n:1\r\n+b\r\n*2\r\n$1\r\nx\r\n_\r\n", ">2\r\n+a\r\n+b\r\n", "|1\r\n+a\r\n+b\r\n:1\r\n",
		"!3\r\nERR\r\n", "=5\r\ntxt:x\r\n", "(123\r\n,1.5\r\n#f\r\n", "*-1\r\n$-1\r\n", "~1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _ := Commands(b, func(name []byte) {
			if len(name) == 0 || len(name) > len(b) {
				t.Fatalf("command name %q from %d bytes", name, len(b))
			}
			_ = Command(name)
		})
		if n > len(b) {
			t.Fatalf("%d commands in %d bytes", n, len(b))
		}
		m, _, _ := Replies(b, func(r Reply) { _ = Error(r.ErrCode) })
		if m > len(b) {
			t.Fatalf("%d replies in %d bytes", m, len(b))
		}
	})
}
