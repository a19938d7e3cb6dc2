// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Vigil's eBPF programs in one object. Each program is loaded and attached
// on its own by the Go loader, so one the kernel refuses does not keep the
// others from running.
#include "common.h"
#include "tcp.h"
#include "process.h"
#include "http.h"
#include "tls.h"
#include "cgroup.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Keep the event types in the object's BTF for bpf2go's -type.
const struct vigil_tcp_event *vigil_unused_tcp __attribute__((unused));
const struct vigil_proc_event *vigil_unused_proc __attribute__((unused));
const struct vigil_http_event *vigil_unused_http __attribute__((unused));
const struct vigil_cgroup_event *vigil_unused_cgroup __attribute__((unused));
