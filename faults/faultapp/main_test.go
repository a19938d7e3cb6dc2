package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vigil-agent/vigil/internal/image"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// buildApp builds the fault app for this machine (skipped under -short).
func buildApp(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short (make test-unit): builds the fault app with the go command")
	}
	bin, err := image.GoBuild{Package: ".", Platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}.Build(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestModes runs the built fault app and switches it through the built-in
// modes by its control file and its control endpoint, checking what a client
// of the service sees.
func TestModes(t *testing.T) {
	bin := buildApp(t)
	addr, caddr := freeAddr(t), freeAddr(t)
	ctl := filepath.Join(t.TempDir(), "mode")
	cmd := exec.Command(bin)
	cmd.Env = []string{"FAULTS_ADDR=" + addr, "FAULTS_CONTROL_ADDR=" + caddr, "FAULTS_CONTROL=/nonexistent," + ctl}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("fault app's stderr:\n%s", stderr.String())
		}
	})
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	// get returns the service's status code, or -1 when the connection is refused.
	get := func() int {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return -1
			}
			t.Fatalf("GET: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	wait := func(what string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := get()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: service answers %d, want %d", what, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	put := func(mode string) int {
		req, _ := http.NewRequest(http.MethodPut, "http://"+caddr+"/mode", strings.NewReader(mode))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("PUT /mode %q: %v", mode, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	setFile := func(mode string) {
		if err := os.WriteFile(ctl, []byte(mode), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	wait("start (no control)", 200)
	setFile("5xx")
	wait("control file 5xx", 503)
	setFile("refuse")
	wait("control file refuse", -1)
	setFile("no-such-mode")
	time.Sleep(200 * time.Millisecond)
	if got := get(); got != -1 {
		t.Errorf("an unknown mode changed the behaviour: service answers %d, want still refused", got)
	}
	if !strings.Contains(stderr.String(), `unknown mode "no-such-mode" ignored`) {
		t.Errorf("an unknown mode in the control file is not reported on stderr")
	}
	if got := put("no-such-mode"); got != http.StatusBadRequest {
		t.Errorf("PUT /mode of an unknown mode: %d, want 400", got)
	}
	if got := put("ok"); got != http.StatusNoContent {
		t.Fatalf("PUT /mode ok: %d, want 204", got)
	}
	wait("control endpoint ok over the file's refuse", 200)
	if got := put("lowerror"); got != http.StatusNoContent {
		t.Fatalf("PUT /mode lowerror: %d, want 204", got)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := c.Get("http://" + caddr + "/mode")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(b)) == "lowerror" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /mode: %q, want lowerror", b)
		}
	}
	n5xx := 0
	for range 200 {
		if get() == http.StatusServiceUnavailable {
			n5xx++
		}
	}
	if n5xx != 4 {
		t.Errorf("lowerror: %d of 200 answers were 503, want 4 (one in 50)", n5xx)
	}
	put("")
	wait("control endpoint cleared: the file's unknown mode keeps the last one (lowerror, mostly 200)", 200)
	setFile("crash")
	select {
	case err := <-done:
		done <- err // for the cleanup
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("crash: the app ended with %v, want exit code 3", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("crash: the app is still running 10 s after the mode was set")
	}
}
