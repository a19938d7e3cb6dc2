package ebpf

import "testing"

func TestParseTraceParent(t *testing.T) {
	tp, ok := parseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if !ok || !tp.Sampled || tp.TraceID[0] != 0x4b || tp.SpanID[7] != 0xb7 {
		t.Errorf("valid traceparent: %+v %v", tp, ok)
	}
	for _, bad := range []string{
		"", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
	} {
		if _, ok := parseTraceParent(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestParseHTTP(t *testing.T) {
	m, err := parseHTTP([]byte("POST /a HTTP/1.1\r\nHost: svc:80\r\nTraceParent: x\r\nContent-Le"))
	if err != nil || !m.Request || m.Method != "POST" || m.Target != "/a" || m.Host != "svc:80" || m.TraceParent != "x" {
		t.Errorf("request: %+v %v", m, err)
	}
	m, err = parseHTTP([]byte("HTTP/1.1 404 Not Found\r\n"))
	if err != nil || m.Request || m.Status != 404 {
		t.Errorf("response: %+v %v", m, err)
	}
	for _, bad := range []string{"GET /a", "HTTP/2 200", "HTTP/1.1 20", "BREW /pot HTTP/1.1\r\n", "GET /a HTTP/3\r\n"} {
		if _, err := parseHTTP([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
