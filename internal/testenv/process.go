package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Command describes a server process for [StartProcess].
type Command struct {
	// Name is a short name used in messages and for the log file, e.g. "etcd".
	Name string
	// Path is the binary; Args its arguments (without the program name).
	Path string
	Args []string
	// Env is added to the test's environment.
	Env []string
	// Dir is the working directory (default: the test's temp directory).
	Dir string
	// Ready reports nil once the server serves; nil means ready once started.
	// See [HTTPReady], [TCPReady] and [SocketReady].
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds the wait for Ready (default 2 minutes: generous on
	// purpose, as a loaded 2-core machine can be slow).
	ReadyTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL
	// (default 15s).
	StopTimeout time.Duration
}

// Process is a running server started by [StartProcess]. Its standard output
// and error go to a log file, which survives restarts. At the end of the test
// it is stopped (SIGTERM, then SIGKILL); if the test failed, the tail of its
// log is printed and the whole log is copied to $VIGIL_TESTENV_LOGS (default
// vigil-testenv-logs under the system temp folder).
type Process struct {
	t       TB
	cmd     Command
	logPath string

	mu   sync.Mutex
	proc *exec.Cmd
	done chan struct{} // closed when proc has exited
	err  error         // proc's exit status, once done is closed
}

// StartProcess starts c, waits until it is ready and registers its stop at
// the test's cleanup. A process that exits or does not become ready fails
// the test, with the tail of its log in the message.
func StartProcess(t TB, c Command) *Process {
	t.Helper()
	dir := t.TempDir() // before Cleanup below: the stop runs before removal
	if c.Dir == "" {
		c.Dir = dir
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 2 * time.Minute
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 15 * time.Second
	}
	logDir := filepath.Join(dir, "logs")
	if ld, ok := t.(interface{ LogDir() string }); ok {
		logDir = ld.LogDir() // cmd/testenv-up keeps every log in one folder
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p := &Process{t: t, cmd: c, logPath: filepath.Join(logDir, c.Name+".log")}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("testenv: stop %s: %v", c.Name, err)
		}
		if t.Failed() {
			p.keepLog()
		}
	})
	if err := p.Start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// Name returns the process's short name.
func (p *Process) Name() string { return p.cmd.Name }

// LogPath returns the path of the process's log file.
func (p *Process) LogPath() string { return p.logPath }

// Pid returns the process ID of the running process, or 0.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil || p.proc.Process == nil {
		return 0
	}
	return p.proc.Process.Pid
}

// Exited reports whether the process has exited, and its exit error.
func (p *Process) Exited() (bool, error) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true, nil
	}
	select {
	case <-done:
		return true, p.err
	default:
		return false, nil
	}
}

// Start starts the process again after [Process.Stop], with the same
// arguments (so the same ports and data folders), and waits until it is
// ready. It is an error to start a running process.
func (p *Process) Start() error {
	p.t.Helper()
	p.mu.Lock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			p.mu.Unlock()
			return fmt.Errorf("%s is already running", p.cmd.Name)
		}
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	fmt.Fprintf(logf, "=== testenv %s: start %s %s\n", time.Now().Format(time.RFC3339Nano), p.cmd.Path, strings.Join(p.cmd.Args, " "))
	cmd := exec.Command(p.cmd.Path, p.cmd.Args...)
	cmd.Dir = p.cmd.Dir
	cmd.Env = append(os.Environ(), p.cmd.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group, so Stop reaches any children; and killed with the
	// test binary if that dies without cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.mu.Unlock()
		return fmt.Errorf("start %s: %w", p.cmd.Name, err)
	}
	done := make(chan struct{})
	p.proc, p.done, p.err = cmd, done, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return p.waitReady(done)
}

// waitReady polls the Ready check until it passes, the process exits or the
// ready timeout passes.
func (p *Process) waitReady(done <-chan struct{}) error {
	p.t.Helper()
	if p.cmd.Ready == nil {
		return nil
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(p.t.Context(), p.cmd.ReadyTimeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		last = p.cmd.Ready(cctx)
		ccancel()
		if last == nil {
			p.t.Logf("testenv: %s ready in %s (log %s)", p.cmd.Name, time.Since(start).Round(time.Millisecond), p.logPath)
			return nil
		}
		select {
		case <-done:
			_, err := p.Exited()
			return fmt.Errorf("%s exited before it was ready (%v); log tail:\n%s", p.cmd.Name, err, p.LogTail(40))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %v; log tail:\n%s", p.cmd.Name, p.cmd.ReadyTimeout, last, p.LogTail(40))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the process: SIGTERM to its process group, then SIGKILL after
// the stop timeout. Stopping a stopped process does nothing.
func (p *Process) Stop() error {
	p.mu.Lock()
	proc, done := p.proc, p.done
	p.mu.Unlock()
	if proc == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	pgid := proc.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(p.cmd.StopTimeout):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-done:
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.cmd.Name, p.cmd.StopTimeout)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not exit after SIGKILL", p.cmd.Name)
	}
}

// Restart stops the process and starts it again with the same arguments.
func (p *Process) Restart() error {
	p.t.Helper()
	if err := p.Stop(); err != nil {
		return err
	}
	return p.Start()
}

// LogTail returns the last n lines of the process's log.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// keepLog prints the log's tail and copies the log out of the temp folder.
func (p *Process) keepLog() {
	dir := os.Getenv(EnvLogDir)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "vigil-testenv-logs")
	}
	dir = filepath.Join(dir, sanitize(p.t.Name()))
	kept := "not kept"
	if err := os.MkdirAll(dir, 0o755); err == nil {
		dst := filepath.Join(dir, p.cmd.Name+".log")
		if err := copyFile(p.logPath, dst); err == nil {
			kept = "kept at " + dst
		}
	}
	p.t.Logf("testenv: %s log (%s), last lines:\n%s", p.cmd.Name, kept, p.LogTail(40))
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, name)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// HTTPReady returns a readiness check that passes when GET url answers 200.
func HTTPReady(url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := httpGet(ctx, url)
		return err
	}
}

// TCPReady returns a readiness check that passes when addr accepts a TCP
// connection.
func TCPReady(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// SocketReady returns a readiness check that passes when the Unix socket at
// path accepts a connection.
func SocketReady(path string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// errNotYet is returned by readiness checks that got an answer that is not
// the expected one yet.
var errNotYet = errors.New("not ready yet")
