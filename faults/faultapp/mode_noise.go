package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

// The modes of healthy but noisy services, which nothing may act on (with
// lowerror, mode_lowerror.go):
//
//	slowburst  for FAULTS_BURST_FOR (default 2.5s) of every FAULTS_BURST_EVERY
//	           (default 1m), on the wall clock so that every replica bursts
//	           at once (a shared cache expiring, a batch), every answer waits
//	           FAULTS_BURST_DELAY (default 1.5s); the rest are served at once
//	restart    FAULTS_RESTART_EVERY (default 45s) after entering the mode,
//	           shut down cleanly (stop listening, finish the requests in
//	           flight) and exit 0, as a service does on a redeploy or a
//	           scheduled restart; its kubelet starts it again
func init() {
	every := envDuration("FAULTS_BURST_EVERY", time.Minute)
	length := envDuration("FAULTS_BURST_FOR", 2500*time.Millisecond)
	delay := envDuration("FAULTS_BURST_DELAY", 1500*time.Millisecond)
	register("slowburst", Mode{Handle: func(_ *App, _ http.ResponseWriter, r *http.Request) bool {
		if inBurst(time.Now(), every, length) {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
			}
		}
		return false // then answer as usual
	}})
	restartEvery := envDuration("FAULTS_RESTART_EVERY", 45*time.Second)
	register("restart", Mode{Enter: func(a *App) int {
		time.AfterFunc(restartEvery, func() {
			if a.Mode() == "restart" {
				fmt.Fprintln(os.Stderr, "fault app: clean restart (mode restart)")
				a.Stop()
			}
		})
		return -1
	}})
}

// inBurst says whether now falls in the first length of a period of every.
func inBurst(now time.Time, every, length time.Duration) bool {
	if every <= 0 {
		return false
	}
	return time.Duration(now.UnixNano()%int64(every)) < length
}

// envDuration reads a Go duration from the environment, def when unset or
// not a positive duration.
func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
