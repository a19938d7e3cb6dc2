//go:build vigil_pprof

package main

// Built only with -tags vigil_pprof (never in the shipped agent): serves
// net/http/pprof on VIGIL_PPROF_ADDR (default 127.0.0.1:6061) to find
// where the agent's idle CPU and heap go (docs/cost.md).
import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("VIGIL_PPROF_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6061"
	}
	go func() { _ = http.ListenAndServe(addr, nil) }()
}
