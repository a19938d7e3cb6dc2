// Package components is the one place that says which parts a Vigil binary
// has: importing it registers every collector and section with the
// component registry (package component). Each part registers itself from
// its own package's init; adding one is one line here.
package components

import (
	_ "github.com/vigil-agent/vigil/collectors/cgroup"
	_ "github.com/vigil-agent/vigil/collectors/ebpf"
	_ "github.com/vigil-agent/vigil/collectors/host"
	_ "github.com/vigil-agent/vigil/collectors/kube"
	_ "github.com/vigil-agent/vigil/collectors/logs"
	_ "github.com/vigil-agent/vigil/collectors/textfile"
	_ "github.com/vigil-agent/vigil/exporters"
	_ "github.com/vigil-agent/vigil/healing"
	_ "github.com/vigil-agent/vigil/internal/overhead"
	_ "github.com/vigil-agent/vigil/rules"
)
