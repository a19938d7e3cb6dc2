package ebpf

import "testing"

func TestRouteOf(t *testing.T) {
	for _, c := range []struct{ target, path, route string }{
		{"/", "/", "/"},
		{"/users/12345?verbose=1", "/users/12345", "/users/{id}"},
		{"/api/v1/orders/6f1c2a9e-3b1d-4c7e-9f0a-1b2c3d4e5f60/items", "/api/v1/orders/6f1c2a9e-3b1d-4c7e-9f0a-1b2c3d4e5f60/items", "/api/v1/orders/{id}/*"},
		{"/static/app.js", "/static/app.js", "/static/app.js"},
		{"/blob/deadbeefcafe0123", "/blob/deadbeefcafe0123", "/blob/{id}"},
		{"http://example.test/a/7#frag", "/a/7", "/a/{id}"},
		{"*", "*", "/"},
	} {
		path, route := routeOf(c.target)
		if path != c.path || route != c.route {
			t.Errorf("routeOf(%q) = %q, %q; want %q, %q", c.target, path, route, c.path, c.route)
		}
	}
}

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
