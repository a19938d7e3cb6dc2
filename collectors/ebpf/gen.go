//go:build linux

package ebpf

//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -type vigil_tcp_event -type vigil_proc_event -type vigil_http_event -type vigil_cgroup_event -target amd64,arm64 vigil bpf/vigil.c -- -I./bpf
