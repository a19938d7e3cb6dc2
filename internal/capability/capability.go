// Package capability reads and reduces the agent's Linux capability sets
// (capabilities(7)): once it has started, the agent keeps only what it
// still uses at run time (docs/security.md, "Capabilities at run time").
package capability

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// Cap is a Linux capability number (CAP_CHOWN is 0).
type Cap int

// The capabilities the agent names on its own.
const (
	DACReadSearch Cap = 2
	SetPCap       Cap = 8
	SysPtrace     Cap = 19
	SysAdmin      Cap = 21
	SysResource   Cap = 24
	Perfmon       Cap = 38
	BPF           Cap = 39
)

// names are the capabilities of Linux 6.x, lower case without "cap_" as
// getpcaps(8) and the metric label print them; index is the number.
var names = []string{
	"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
	"setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
	"ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
	"sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
	"lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
	"wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
}

// String is the capability's lower-case name without "cap_" ("bpf"), or
// "cap_N" for a number this table does not know.
func (c Cap) String() string {
	if c >= 0 && int(c) < len(names) {
		return names[c]
	}
	return fmt.Sprintf("cap_%d", int(c))
}

// Parse reads a capability name: "bpf", "BPF", "cap_bpf" or "CAP_BPF".
func Parse(s string) (Cap, error) {
	n := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "cap_")
	if i := slices.Index(names, n); i >= 0 {
		return Cap(i), nil
	}
	return 0, fmt.Errorf("unknown capability %q (known: %s)", s, strings.Join(names, ", "))
}

// Set is a capability set as a bit mask (bit n: capability n), as
// /proc/<pid>/status prints it in hex.
type Set uint64

// Of returns the set holding cs.
func Of(cs ...Cap) Set {
	var s Set
	for _, c := range cs {
		s |= 1 << uint(c)
	}
	return s
}

// Has reports whether c is in s.
func (s Set) Has(c Cap) bool { return c >= 0 && c < 64 && s&(1<<uint(c)) != 0 }

// Caps lists the capabilities in s in number order.
func (s Set) Caps() []Cap {
	var cs []Cap
	for c := Cap(0); c < 64; c++ {
		if s.Has(c) {
			cs = append(cs, c)
		}
	}
	return cs
}

// String lists the names in s, comma separated ("perfmon,bpf"), or "none".
func (s Set) String() string {
	cs := s.Caps()
	if len(cs) == 0 {
		return "none"
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, ",")
}

// State is a process's capability sets and its no_new_privs flag.
type State struct {
	Effective, Permitted, Inheritable, Ambient, Bounding Set
	NoNewPrivs                                           bool
}

// Sets returns the five sets by the name the metric's set label uses.
func (s State) Sets() map[string]Set {
	return map[string]Set{
		"effective": s.Effective, "permitted": s.Permitted, "inheritable": s.Inheritable,
		"ambient": s.Ambient, "bounding": s.Bounding,
	}
}

// runTimeUse is what started components use after the start (UseAtRunTime).
var runTimeUse atomic.Uint64

// UseAtRunTime records that a started component uses the capabilities of
// s after the agent's start (the TLS discovery attaches uprobes to
// processes as they start), so the agent's drop keeps those it holds.
func UseAtRunTime(s Set) { runTimeUse.Or(uint64(s)) }

// RunTimeUse is what UseAtRunTime recorded.
func RunTimeUse() Set { return Set(runTimeUse.Load()) }
