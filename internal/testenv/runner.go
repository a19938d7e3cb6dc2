package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// Runner implements TB outside of a test, for the commands that bring the
// servers up (testenv-up, the fault bench): Fatalf and Skipf unwind Run's
// function (so they must be called from its goroutine), the cleanups run in
// reverse order when it returns, and folders live under Dir and are kept
// after the run for inspection.
type Runner struct {
	Ctx context.Context
	// Dir holds the numbered folders of TempDir and the servers' logs.
	Dir string
	Log *slog.Logger
	// Label is what Name returns.
	Label string
	// LogLevel is the level Logf writes at.
	LogLevel slog.Level

	cleanups []func()
	failed   bool
	n        int
}

// runnerFatal unwinds Run's function after Fatalf or Skipf.
type runnerFatal struct{}

// Run calls fn, then the cleanups in reverse order, and returns the exit
// code: 1 when fn failed.
func (r *Runner) Run(fn func()) (code int) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(runnerFatal); !ok {
				panic(v)
			}
			r.failed = true
		}
		for i := len(r.cleanups) - 1; i >= 0; i-- {
			r.cleanups[i]()
		}
		if r.failed {
			code = 1
		}
	}()
	fn()
	return 0
}

func (r *Runner) Helper()                  {}
func (r *Runner) Name() string             { return r.Label }
func (r *Runner) Failed() bool             { return r.failed }
func (r *Runner) Context() context.Context { return r.Ctx }
func (r *Runner) Cleanup(f func())         { r.cleanups = append(r.cleanups, f) }

func (r *Runner) Logf(format string, args ...any) {
	r.Log.Log(context.Background(), r.LogLevel, fmt.Sprintf(format, args...))
}

func (r *Runner) Fatalf(format string, args ...any) {
	r.Log.Error(fmt.Sprintf(format, args...))
	r.failed = true
	panic(runnerFatal{})
}

// Skipf fails like Fatalf: a command has nothing to skip to.
func (r *Runner) Skipf(format string, args ...any) { r.Fatalf(format, args...) }

// LogDir is where every server's log goes: Dir/logs.
func (r *Runner) LogDir() string { return filepath.Join(r.Dir, "logs") }

// TempDir returns a new numbered folder under Dir.
func (r *Runner) TempDir() string {
	r.n++
	d := filepath.Join(r.Dir, fmt.Sprintf("%03d", r.n))
	if err := os.MkdirAll(d, 0o755); err != nil {
		r.Fatalf("%v", err)
	}
	return d
}
