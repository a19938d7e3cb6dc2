package route

import "testing"

func TestOf(t *testing.T) {
	for _, c := range []struct{ target, path, route string }{
		{"/", "/", "/"},
		{"/users/12345?verbose=1", "/users/12345", "/users/{id}"},
		{"/api/v1/orders/6f1c2a9e-3b1d-4c7e-9f0a-1b2c3d4e5f60/items", "/api/v1/orders/6f1c2a9e-3b1d-4c7e-9f0a-1b2c3d4e5f60/items", "/api/v1/orders/{id}/*"},
		{"/static/app.js", "/static/app.js", "/static/app.js"},
		{"/blob/deadbeefcafe0123", "/blob/deadbeefcafe0123", "/blob/{id}"},
		{"http://example.test/a/7#frag", "/a/7", "/a/{id}"},
		{"*", "*", "/"},
	} {
		path, route := Of(c.target)
		if path != c.path || route != c.route {
			t.Errorf("Of(%q) = %q, %q; want %q, %q", c.target, path, route, c.path, c.route)
		}
	}
}
