// Package ebpf is Vigil's eBPF collector: TCP connection lifecycle,
// retransmits and resets; process exec, exit and OOM kills; and HTTP/1.x
// requests seen from syscalls, each attributed to the workload (cgroup) it
// belongs to. Failed process exits and OOM kills are published on the
// agent's fast-path event bus as they happen; HTTP requests become
// OpenTelemetry spans.
//
// The C programs live in bpf/ and are compiled by bpf2go (`make generate`)
// into the committed vigil_*_bpfel.{go,o}, so building Vigil needs no
// clang. At start the collector discovers what the kernel allows, loads
// every program it can on its own, and reports the rest with
// vigil_ebpf_program_loaded{program}=0 and one log line each.
package ebpf
