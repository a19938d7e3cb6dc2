package main

// Every collector registers itself from its package's init function; this
// file is the one place that says which are compiled into the binary.
import (
	_ "github.com/vigil-agent/vigil/collectors/cgroup"
	_ "github.com/vigil-agent/vigil/collectors/ebpf"
	_ "github.com/vigil-agent/vigil/collectors/host"
	_ "github.com/vigil-agent/vigil/collectors/kube"
	_ "github.com/vigil-agent/vigil/collectors/logs"
	_ "github.com/vigil-agent/vigil/collectors/textfile"
)
