package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

// The built-in modes:
//
//	ok      answer 200 (after calling the dependency, if any)
//	5xx     answer 503
//	crash   exit with code 3 (at start, and as soon as the mode is seen)
//	oom     allocate and touch memory until the OOM killer ends the process
//	refuse  close the listener: connections are refused
func init() {
	register("ok", Mode{})
	register("5xx", Mode{Handle: func(_ *App, w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, "fault injected: 5xx", http.StatusServiceUnavailable)
		return true
	}})
	register("crash", Mode{Enter: func(*App) int {
		fmt.Fprintln(os.Stderr, "fault app: crashing (mode crash)")
		return 3
	}})
	register("oom", Mode{Enter: func(*App) int { leak(); return 1 }})
	register("refuse", Mode{Refuse: true})
}

// leak allocates and touches memory until the process is killed.
func leak() {
	var keep [][]byte
	for {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		//lint:ignore SA4010 keep holds the pages so that the memory limit is reached.
		keep = append(keep, b)
		time.Sleep(time.Millisecond)
	}
}
