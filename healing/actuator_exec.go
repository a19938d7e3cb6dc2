package healing

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// execRunbook runs a runbook script: an argv list (each argument may be a
// template over the alert's labels, but it is never handed to a shell, and
// a templated argument that would read as an option is vetoed; the program
// and the working directory are fixed in the policy),
// a timeout after which its whole process group is killed, a clean
// environment and captured output.
type execRunbook struct{}

func init() { Register(execRunbook{}) }

func (execRunbook) Name() string { return "exec" }
func (execRunbook) Scope() Scope { return ScopeNode }
func (execRunbook) Doc() string {
	return "runs a runbook script: argv only (never a shell string built from labels), clean environment (PATH, LANG, VIGIL_POLICY, VIGIL_ALERTNAME, VIGIL_AGENT), its process group killed at the timeout, output (64 KiB kept) in the record; it runs as the agent's uid with at most the capabilities the agent kept and no_new_privs ([docs/security.md](security.md#capabilities-at-run-time))"
}
func (execRunbook) Params() []Param {
	return []Param{
		{Name: "command", Required: true, List: true, FixedHead: true, NoOptions: true, Doc: "argv: an absolute program path, then its arguments"},
		{Name: "timeout", Default: "60s", Check: checkDuration, Doc: "killed (with its children) after this"},
		{Name: "dir", Default: "/", Fixed: true, Check: checkAbs, Doc: "working directory"},
		{Name: "target", Doc: "what the script acts on, for cooldowns and records (default: the program path)"},
	}
}
func (execRunbook) Target(a Args) Target {
	name := a.Str("target")
	if c := a.List("command"); name == "" && len(c) > 0 {
		name = c[0]
	}
	return Target{Kind: "Command", Name: name}
}

func checkAbs(s string) error {
	if !filepath.IsAbs(s) {
		return fmt.Errorf("must be an absolute path, got %q", s)
	}
	return nil
}

// maxOutput is how much of a runbook's output is kept.
const maxOutput = 64 << 10

type capped struct {
	bytes.Buffer
	dropped int
}

func (c *capped) Write(p []byte) (int, error) {
	room := maxOutput - c.Len()
	if room < len(p) {
		c.dropped += len(p) - max(room, 0)
		if room > 0 {
			c.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

func (execRunbook) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	argv := a.List("command")
	if len(argv) == 0 || !filepath.IsAbs(argv[0]) {
		return Outcome{}, fmt.Errorf("command[0] must be an absolute program path, got %q", strings.Join(argv, " "))
	}
	timeout := a.Duration("timeout")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = a.Str("dir")
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	if esc := in.Escalation; esc != nil {
		cmd.Env = append(cmd.Env, "VIGIL_POLICY="+esc.Policy, "VIGIL_ALERTNAME="+esc.Alert.Name(), "VIGIL_AGENT="+esc.Agent)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var out capped
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if out.dropped > 0 {
		text += fmt.Sprintf(" […%d bytes dropped]", out.dropped)
	}
	if len(text) > 2000 {
		text = "…" + text[len(text)-2000:]
	}
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return Outcome{}, fmt.Errorf("%s killed after the %s timeout; output: %s", argv[0], timeout, text)
	case err != nil:
		return Outcome{}, fmt.Errorf("%s: %v; output: %s", argv[0], err, text)
	}
	return Outcome{Message: fmt.Sprintf("%s exited 0 in %s; output: %s", argv[0], time.Since(start).Round(time.Millisecond), text)}, nil
}
