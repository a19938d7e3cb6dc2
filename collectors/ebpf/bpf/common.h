// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Shared definitions for Vigil's eBPF programs: event kinds, ring buffer
// submission with batched wake-ups, loss accounting and cgroup identity.
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define VIGIL_AF_INET 2
#define VIGIL_AF_INET6 10
#define VIGIL_COMM_LEN 16

// Programs, used as the index of the per-program loss counters. Keep in
// sync with programNames in the Go loader (a test checks it).
enum vigil_prog {
	VIGIL_PROG_TCP_STATE = 0,
	VIGIL_PROG_TCP_RETRANSMIT = 1,
	VIGIL_PROG_TCP_RECEIVE_RESET = 2,
	VIGIL_PROG_TCP_SEND_RESET = 3,
	VIGIL_PROG_PROCESS_EXEC = 4,
	VIGIL_PROG_PROCESS_EXIT = 5,
	VIGIL_PROG_OOM_VICTIM = 6,
	VIGIL_PROG_HTTP_READ = 7,
	VIGIL_PROG_HTTP_RECVFROM = 8,
	VIGIL_PROG_HTTP_READV = 9,
	VIGIL_PROG_HTTP_WRITE = 10,
	VIGIL_PROG_HTTP_SENDTO = 11,
	VIGIL_PROG_HTTP_WRITEV = 12,
	VIGIL_PROG_HTTP_SENDMSG = 13,
	VIGIL_PROG_CGROUP_MKDIR = 14,
	VIGIL_PROG_CGROUP_RMDIR = 15,
	VIGIL_PROG_COUNT = 16,
};

// Configuration set by the loader before the object is loaded.

// wakeup_threshold: the reader is woken once per this many events on a CPU;
// other events are submitted with BPF_RB_NO_WAKEUP and collected by the
// reader's short poll deadline. Wake-ups dominate the per-event cost.
volatile const __u32 wakeup_threshold = 256;
// cgroup_v1_memory: attribute tasks to their cgroup in the v1 memory
// hierarchy instead of the unified (v2) hierarchy.
volatile const __u8 cgroup_v1_memory = 0;
// exit_all: send every process exit, not only failed ones.
volatile const __u8 exit_all = 1;

// events carries TCP and process events; it is kept apart from the HTTP
// ring so that a flood of requests cannot push out an OOM kill.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} http_events SEC(".maps");

// lost counts events a program could not submit (ring buffer full).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_PROG_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

// pending counts events submitted on this CPU since the last wake-up.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pending SEC(".maps");

static __always_inline void vigil_count_lost(__u32 prog)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &prog);
	if (n)
		__sync_fetch_and_add(n, 1);
}

// vigil_submit_flags returns the flags for bpf_ringbuf_submit: an urgent
// event (OOM kill, failed process) wakes the reader at once, others only
// every wakeup_threshold events.
static __always_inline __u64 vigil_submit_flags(bool urgent)
{
	__u32 k = 0;
	__u64 *n;

	if (urgent)
		return BPF_RB_FORCE_WAKEUP;
	n = bpf_map_lookup_elem(&pending, &k);
	if (!n)
		return 0;
	*n += 1;
	if (*n >= wakeup_threshold) {
		*n = 0;
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

// vigil_task_cgroup_id returns the kernfs id of the task's cgroup in the
// hierarchy the agent attributes workloads by; the id equals the inode
// number of the cgroup's directory, which user space maps to a path.
static __always_inline __u64 vigil_task_cgroup_id(struct task_struct *t)
{
	struct css_set *cs = BPF_CORE_READ(t, cgroups);
	struct cgroup *cg = 0;

	if (cgroup_v1_memory) {
		struct cgroup_subsys_state *css = 0;
		int id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
		if (id < 0 || id >= 12)
			return 0;
		bpf_core_read(&css, sizeof(css), &cs->subsys[id]);
		if (!css)
			return 0;
		cg = BPF_CORE_READ(css, cgroup);
	} else {
		cg = BPF_CORE_READ(cs, dfl_cgrp);
	}
	if (!cg)
		return 0;
	return BPF_CORE_READ(cg, kn, id);
}
