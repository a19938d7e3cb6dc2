package main

import (
	"net/http"
	"sync/atomic"
)

// lowerror: a healthy but noisy service; one request in 50 (2 %) answers
// 503, the rest are served normally. It stays under the default alert's 5 %
// 5xx ratio, so nothing may act on it.
var lowerrorCount atomic.Uint64

func init() {
	register("lowerror", Mode{Handle: func(_ *App, w http.ResponseWriter, _ *http.Request) bool {
		if lowerrorCount.Add(1)%50 != 0 {
			return false
		}
		http.Error(w, "an occasional error (mode lowerror)", http.StatusServiceUnavailable)
		return true
	}})
}
