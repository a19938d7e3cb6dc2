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
#define VIGIL_IPPROTO_TCP 6
#define VIGIL_IPPROTO_UDP 17
#define VIGIL_PF_KTHREAD 0x00200000
#define VIGIL_PF_IO_WORKER 0x00000010

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
	VIGIL_PROG_HTTP_SOCK_SEND = 16,
	VIGIL_PROG_HTTP_SOCK_RECV = 17,
	VIGIL_PROG_GO_TLS_WRITE = 18,
	VIGIL_PROG_GO_TLS_READ = 19,
	VIGIL_PROG_SSL_WRITE = 20,
	VIGIL_PROG_SSL_READ = 21,
	VIGIL_PROG_COUNT = 22,
};

// Configuration set by the loader before the object is loaded.

// events_wakeup_bytes, http_wakeup_bytes: each CPU wakes the reader of a
// ring once it has submitted this many bytes to it since its last wake-up
// (set by the loader from wakeup_fill, divided among the CPUs); other
// records are submitted with BPF_RB_NO_WAKEUP and collected at the
// reader's short poll deadline. A wake-up (an irq_work, then a cross-CPU
// wake of the reader) costs more than the rest of a record's submission,
// so it is paid once per batch; the count is per CPU so that no cache line
// is shared between CPUs or with the reader.
volatile const __u64 events_wakeup_bytes = 1 << 17;
volatile const __u64 http_wakeup_bytes = 1 << 19;

enum vigil_ring {
	VIGIL_RING_EVENTS = 0,
	VIGIL_RING_HTTP = 1,
};

// unwoken counts, per CPU and ring, the bytes submitted since the last
// wake-up (the HTTP programs keep theirs beside their per-CPU buffer,
// http_scratch, so that the hot path touches one page less).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} unwoken SEC(".maps");

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

static __always_inline void vigil_count_lost(__u32 prog)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &prog);
	if (n)
		__sync_fetch_and_add(n, 1);
}

// http_ring_gen is the HTTP ring's loss generation: bumped every time a
// record could not be put on http_events (the ring was full), and stamped
// into every record sent (vigil_http_event.gen). User space that reads a
// record whose generation differs from the previous record's knows that
// records were lost in between, and forgets the request queues they could
// have shifted (collectors/ebpf/http_linux.go, ringGap).
__u32 http_ring_gen = 0;

// vigil_http_lost counts a record program prog could not put on
// http_events and starts a new loss generation.
static __always_inline void vigil_http_lost(__u32 prog)
{
	vigil_count_lost(prog);
	__sync_fetch_and_add(&http_ring_gen, 1);
}

// A ring buffer record's size: the data and an 8-byte header, rounded up
// to 8 bytes.
#define VIGIL_RB_RECORD(size) ((((__u64)(size)) + 8 + 7) & ~7ULL)

// vigil_wake_mark returns the flags for submitting a record of size bytes
// given this CPU's count n of bytes submitted since it last woke the
// reader, and updates the count: BPF_RB_FORCE_WAKEUP when urgent (an OOM
// kill, a failed process) or when the count reaches mark, else
// BPF_RB_NO_WAKEUP.
static __always_inline __u64 vigil_wake_mark(__u64 *n, __u64 mark, __u64 size, bool urgent)
{
	if (urgent) {
		*n = 0;
		return BPF_RB_FORCE_WAKEUP;
	}
	*n += VIGIL_RB_RECORD(size);
	if (*n >= mark) {
		*n = 0;
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

// vigil_wake_flags is vigil_wake_mark with the count kept in unwoken.
static __always_inline __u64 vigil_wake_flags(__u32 ring, __u64 size, bool urgent)
{
	__u64 *n = bpf_map_lookup_elem(&unwoken, &ring);
	__u64 mark = ring == VIGIL_RING_HTTP ? http_wakeup_bytes : events_wakeup_bytes;

	if (!n)
		return 0; // the kernel's own choice: cannot happen
	return vigil_wake_mark(n, mark, size, urgent);
}

// vigil_submit_flags returns the flags for bpf_ringbuf_submit of a record
// of size bytes reserved in events.
static __always_inline __u64 vigil_submit_flags(__u64 size, bool urgent)
{
	return vigil_wake_flags(VIGIL_RING_EVENTS, size, urgent);
}

// vigil_sock_addrs fills a socket's family, ports (host order) and
// addresses (network order; IPv4 in the first 4 bytes) from sk, a BTF
// pointer (tp_btf arguments) whose fields are loaded directly.
static __always_inline void vigil_sock_addrs(const struct sock *sk, __u8 *family, __u16 *sport, __u16 *dport,
					     __u8 *saddr, __u8 *daddr)
{
	*family = sk->__sk_common.skc_family;
	*sport = sk->__sk_common.skc_num;
	*dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (*family == VIGIL_AF_INET) {
		__u32 s = sk->__sk_common.skc_rcv_saddr;
		__u32 d = sk->__sk_common.skc_daddr;
		__builtin_memcpy(saddr, &s, 4);
		__builtin_memcpy(daddr, &d, 4);
	} else {
		__builtin_memcpy(saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
	}
}

// vigil_task_cgroup_id returns the kernfs id of the task's cgroup in the
// hierarchy the agent attributes workloads by; the id equals the inode
// number of the cgroup's directory, which user space maps to a path. For
// the current task in the unified hierarchy one helper call does it.
static __always_inline __u64 vigil_task_cgroup_id(struct task_struct *t, bool current)
{
	struct css_set *cs;
	struct cgroup *cg = 0;

	if (!cgroup_v1_memory && current)
		return bpf_get_current_cgroup_id();
	cs = BPF_CORE_READ(t, cgroups);
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

// vigil_current_cgroup_id_btf is vigil_task_cgroup_id of the current task
// for BTF-enabled programs (tp_btf), which load the pointers directly
// instead of through a helper call per pointer.
static __always_inline __u64 vigil_current_cgroup_id_btf(void)
{
	struct task_struct *t;
	struct cgroup_subsys_state *css;
	struct cgroup *cg;
	int id;

	if (!cgroup_v1_memory)
		return bpf_get_current_cgroup_id();
	id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id < 0 || id >= 12)
		return 0;
	t = bpf_get_current_task_btf();
	css = t->cgroups->subsys[id];
	if (!css)
		return 0;
	cg = css->cgroup;
	if (!cg)
		return 0;
	return cg->kn->id;
}
