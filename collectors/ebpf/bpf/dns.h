// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// DNS over UDP, from the socket-layer programs of bpf/http.h: a datagram
// sent or received on a UDP socket whose local or remote port is a DNS
// port (53, or one of dns_ports) and whose first bytes look like a DNS
// header (opcode QUERY, one question) is sent to user space on the HTTP
// ring with its first VIGIL_DNS_CAP bytes (the header and the first
// question), proto VIGIL_L7_DNS. User space decodes it
// (collectors/ebpf/dnsproto) and pairs query and answer by process,
// descriptor and DNS ID. Included by http.h, after the syscall numbers.
#pragma once
#include "common.h"

// Bytes of a datagram sent: the header (12) and a first question of up to
// 255 bytes of name, type and class, rounded up.
#define VIGIL_DNS_CAP 272
#define VIGIL_DNS_HEADER 12
// struct mmsghdr: a struct user_msghdr and the length the kernel writes
// back, padded to 8 bytes.
#define VIGIL_MMSGHDR_SIZE 64

// dns_ports are the ports, besides 53, whose datagrams are looked at
// (local port: a server; remote port: a client on a connected socket).
// Unused entries are 53. Set by the loader from Config.DNSPorts.
volatile const __u16 dns_ports[4] = {53, 53, 53, 53};

// vigil_mmsg_cursor is which message of a sendmmsg or recvmmsg vector a
// thread is at: the socket tracepoints fire once per message inside one
// syscall, whose saved registers name only the vector. Reset when the
// vector changes, when it was gone through, and on an error (which ends
// the syscall's loop).
struct vigil_mmsg_cursor {
	__u64 vec;
	__u32 next;
	__u32 vlen;
};

// dns_mmsg is keyed by thread ID; bounded (LRU), and only written for
// sendmmsg and recvmmsg on DNS ports.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct vigil_mmsg_cursor);
} dns_mmsg SEC(".maps");

// vigil_dns_port reports whether port p (host order) is a DNS port: five
// compares of values in registers, no map.
static __always_inline bool vigil_dns_port(__u16 p)
{
	return p == 53 || p == dns_ports[0] || p == dns_ports[1] || p == dns_ports[2] || p == dns_ports[3];
}

// vigil_dns_capture reads the first bytes of a datagram (n bytes at buf)
// into the per-CPU event and sends it when it looks like a DNS message: a
// query with the socket, cgroup and comm; an answer (QR set) without
// them, since user space matches it to its query by process, descriptor
// and ID.
static __always_inline int vigil_dns_capture(const struct sock *sk, __u32 fd, const void *buf, __u64 n, __u8 dir,
					     __u32 prog)
{
	struct vigil_http_cpu *cpu;
	struct vigil_http_event *e;
	__u32 zero = 0, len;
	__u64 id, size, flags;

	if (!buf || n < VIGIL_DNS_HEADER)
		return 0;
	cpu = bpf_map_lookup_elem(&http_scratch, &zero);
	if (!cpu)
		return 0;
	e = &cpu->ev;
	len = n > VIGIL_DNS_CAP ? VIGIL_DNS_CAP : (__u32)n;
	barrier_var(len);
	len &= VIGIL_HTTP_CAP - 1;
	if (len < VIGIL_DNS_HEADER)
		return 0;
	if (bpf_probe_read_user(e->data, len, buf) != 0)
		return 0;
	// Opcode QUERY (flags bits 11-14), Z zero and one question: user
	// space checks the rest (dnsproto.Parse) and counts what it rejects.
	if (e->data[4] != 0 || e->data[5] != 1 || (e->data[2] & 0x78) || (e->data[3] & 0x40))
		return 0;
	if (e->data[2] & 0x80) {
		__builtin_memset(e, 0, offsetof(struct vigil_http_event, data));
	} else {
		vigil_sock_addrs(sk, &e->family, &e->sport, &e->dport, e->saddr, e->daddr);
		e->cgroup_id = vigil_current_cgroup_id_btf();
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	}
	id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->fd = fd;
	e->size = n;
	e->dir = dir;
	e->has_prefix = 0;
	e->prefix = 0;
	e->window = 0;
	e->proto = VIGIL_L7_DNS;
	e->off = 0;
	e->captured = len;
	e->gen = http_ring_gen;
	size = offsetof(struct vigil_http_event, data) + len;
	flags = vigil_wake_mark(&cpu->unwoken, http_wakeup_bytes, size, false);
	if (bpf_ringbuf_output(&http_events, e, size, flags) != 0)
		vigil_http_lost(prog);
	return 0;
}

// vigil_dns_udp handles a datagram of ret bytes (or an error) sent or
// received on UDP socket sk. A datagram on a port that is not a DNS port
// leaves after the port compares. The syscall's descriptor and buffer are
// read from the task's saved registers, as for TCP, for read, recvfrom,
// readv, recvmsg and recvmmsg, write, sendto, writev, sendmsg and
// sendmmsg (glibc's resolver sends its A and AAAA queries with one
// sendmmsg; Go's writes and reads a connected socket).
static __always_inline int vigil_dns_udp(const struct sock *sk, int ret, __u8 dir, __u32 prog)
{
	struct task_struct *t;
	struct pt_regs *regs;
	__u64 arg, n = ret;
	__u8 kind = VIGIL_HTTP_ARG_NONE;
	__u32 fd, tid, zero = 0;
	long nr;

	if (!vigil_dns_port(sk->__sk_common.skc_num) && !vigil_dns_port(bpf_ntohs(sk->__sk_common.skc_dport)))
		return 0;
	t = bpf_get_current_task_btf();
	if (t->flags & (VIGIL_PF_KTHREAD | VIGIL_PF_IO_WORKER))
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(t);
	nr = VIGIL_SYSCALL_NR(regs);
	tid = (__u32)bpf_get_current_pid_tgid();
	if (ret <= 0) {
		// The syscall's loop over the vector ends here.
		if (nr == VIGIL_NR_SENDMMSG || nr == VIGIL_NR_RECVMMSG)
			bpf_map_delete_elem(&dns_mmsg, &tid);
		return 0;
	}
	if (vigil_http_sampled_out(bpf_map_lookup_elem(&http_control, &zero),
				   ((__u64)sk->__sk_common.skc_portpair << 32) | sk->__sk_common.skc_daddr))
		return 0;
	if (dir == VIGIL_HTTP_READ) {
		if (nr == VIGIL_NR_READ || nr == VIGIL_NR_RECVFROM)
			kind = VIGIL_HTTP_ARG_BUF;
		else if (nr == VIGIL_NR_READV)
			kind = VIGIL_HTTP_ARG_IOVEC;
		else if (nr == VIGIL_NR_RECVMSG)
			kind = VIGIL_HTTP_ARG_MSGHDR;
		else if (nr == VIGIL_NR_RECVMMSG)
			kind = VIGIL_HTTP_ARG_MMSG;
	} else {
		if (nr == VIGIL_NR_WRITE || nr == VIGIL_NR_SENDTO)
			kind = VIGIL_HTTP_ARG_BUF;
		else if (nr == VIGIL_NR_WRITEV)
			kind = VIGIL_HTTP_ARG_IOVEC;
		else if (nr == VIGIL_NR_SENDMSG)
			kind = VIGIL_HTTP_ARG_MSGHDR;
		else if (nr == VIGIL_NR_SENDMMSG)
			kind = VIGIL_HTTP_ARG_MMSG;
	}
	if (kind == VIGIL_HTTP_ARG_NONE)
		return 0;
	fd = (__u32)PT_REGS_PARM1_SYSCALL(regs);
	arg = PT_REGS_PARM2_SYSCALL(regs);
	if (kind == VIGIL_HTTP_ARG_MMSG) {
		struct vigil_mmsg_cursor *c = bpf_map_lookup_elem(&dns_mmsg, &tid);
		struct vigil_mmsg_cursor nc = {.vec = arg, .vlen = (__u32)PT_REGS_PARM3_SYSCALL(regs)};
		__u32 i = 0;

		if (c && c->vec == nc.vec && c->vlen == nc.vlen && c->next < nc.vlen)
			i = c->next;
		nc.next = i + 1;
		bpf_map_update_elem(&dns_mmsg, &tid, &nc, BPF_ANY);
		arg += (__u64)i * VIGIL_MMSGHDR_SIZE; // msg_hdr is the entry's first member
		kind = VIGIL_HTTP_ARG_MSGHDR;
	}
	if (kind == VIGIL_HTTP_ARG_MSGHDR) {
		struct user_msghdr msg = {};
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)arg) != 0 || !msg.msg_iov || msg.msg_iovlen < 1)
			return 0;
		arg = (__u64)msg.msg_iov;
		kind = VIGIL_HTTP_ARG_IOVEC;
	}
	if (kind == VIGIL_HTTP_ARG_IOVEC) {
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)arg) != 0)
			return 0;
		arg = (__u64)iov.iov_base;
		if (n > iov.iov_len)
			n = iov.iov_len;
	}
	return vigil_dns_capture(sk, fd, (void *)arg, n, dir, prog);
}
