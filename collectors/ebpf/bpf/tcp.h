// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// TCP lifecycle from sock/inet_sock_set_state, retransmits and resets from
// the tcp tracepoints. All attached as BTF-typed tracepoints (tp_btf).
#pragma once
#include "common.h"

#define VIGIL_TCP_ESTABLISHED 1
#define VIGIL_TCP_SYN_SENT 2
#define VIGIL_TCP_SYN_RECV 3
#define VIGIL_TCP_CLOSE 7
#define VIGIL_TCP_LISTEN 10

enum vigil_tcp_kind {
	VIGIL_TCP_EV_CONNECT = 1,      // active open established (duration: connect latency)
	VIGIL_TCP_EV_CONNECT_FAIL = 2, // active open failed (err: sk_err, duration: time spent)
	VIGIL_TCP_EV_ACCEPT = 3,       // passive open established
	VIGIL_TCP_EV_CLOSE = 4,        // established connection closed (duration: lifetime)
	VIGIL_TCP_EV_LISTEN = 5,       // socket started listening
	VIGIL_TCP_EV_RETRANSMIT = 6,
	VIGIL_TCP_EV_RESET_SENT = 7,
	VIGIL_TCP_EV_RESET_RECEIVED = 8,
};

// vigil_tcp_event is one TCP event. Addresses are in network byte order;
// ports in host order. For inbound connections saddr:sport is the local
// (listening) side.
struct vigil_tcp_event {
	__u64 ts_ns;
	__u64 cgroup_id;
	__u64 duration_ns;
	__u32 pid;
	__u32 err;
	__u16 sport;
	__u16 dport;
	__u8 kind;
	__u8 family;
	__u8 inbound;
	__u8 _pad;
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[VIGIL_COMM_LEN];
};

// vigil_tcp_sock is what is remembered about a socket between its state
// changes: who opened it and when.
struct vigil_tcp_sock {
	__u64 start_ns;       // SYN sent / SYN received
	__u64 established_ns; // 0 until established
	__u64 cgroup_id;
	__u32 pid;
	__u8 inbound;
	__u8 closed;
	// sport is the local port (host order), kept when the connection is
	// established: a socket that reaches CLOSE through TIME_WAIT has
	// given its port to the timewait socket by then (skc_num is 0), and
	// its close must name the same connection as its accept.
	__u16 sport;
	char comm[VIGIL_COMM_LEN];
};

// socks is bounded (LRU): a socket evicted before it closes is simply not
// reported at close. Its size is set by the loader.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct vigil_tcp_sock);
} socks SEC(".maps");

// listeners maps a listening port to who listens on it, so accepted
// connections (established in softirq, with no process context) are
// attributed to the listening process's cgroup.
struct vigil_tcp_listener {
	__u64 cgroup_id;
	__u32 pid;
	char comm[VIGIL_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u16);
	__type(value, struct vigil_tcp_listener);
} listeners SEC(".maps");

static __always_inline void vigil_tcp_addrs(const struct sock *sk, struct vigil_tcp_event *e)
{
	vigil_sock_addrs(sk, &e->family, &e->sport, &e->dport, e->saddr, e->daddr);
}

static __always_inline int vigil_tcp_emit(const struct sock *sk, __u8 kind, struct vigil_tcp_sock *s,
					   __u64 now, __u64 duration, __u32 err, __u32 prog)
{
	struct vigil_tcp_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		vigil_count_lost(prog);
		return 0;
	}
	e->ts_ns = now;
	e->kind = kind;
	e->duration_ns = duration;
	e->err = err;
	e->_pad = 0;
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	vigil_tcp_addrs(sk, e);
	if (s && !e->sport)
		e->sport = s->sport;
	if (s) {
		e->pid = s->pid;
		e->cgroup_id = s->cgroup_id;
		e->inbound = s->inbound;
		__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	} else {
		e->pid = bpf_get_current_pid_tgid() >> 32;
		e->cgroup_id = vigil_current_cgroup_id_btf();
		e->inbound = 0;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	}
	bpf_ringbuf_submit(e, vigil_submit_flags(sizeof(*e), false));
	return 0;
}

static __always_inline void vigil_h2_tls_closed(__u64 key);

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(vigil_tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk;
	__u64 now;
	struct vigil_tcp_sock *s;

	// Most transitions (FIN_WAIT*, CLOSE_WAIT, LAST_ACK, TIME_WAIT,
	// CLOSING) say nothing the metrics need: leave before any read.
	if (newstate != VIGIL_TCP_SYN_SENT && newstate != VIGIL_TCP_LISTEN && newstate != VIGIL_TCP_SYN_RECV &&
	    newstate != VIGIL_TCP_ESTABLISHED && newstate != VIGIL_TCP_CLOSE)
		return 0;
	if (sk->sk_protocol != VIGIL_IPPROTO_TCP)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != VIGIL_AF_INET && family != VIGIL_AF_INET6)
		return 0;
	now = bpf_ktime_get_ns();

	if (newstate == VIGIL_TCP_SYN_SENT) {
		// connect(2): process context.
		struct vigil_tcp_sock n = {};
		n.start_ns = now;
		n.pid = bpf_get_current_pid_tgid() >> 32;
		n.cgroup_id = vigil_current_cgroup_id_btf();
		bpf_get_current_comm(n.comm, sizeof(n.comm));
		bpf_map_update_elem(&socks, &key, &n, BPF_ANY);
		return 0;
	}
	if (newstate == VIGIL_TCP_LISTEN) {
		// listen(2): process context.
		struct vigil_tcp_listener l = {};
		__u16 port = sk->__sk_common.skc_num;
		l.pid = bpf_get_current_pid_tgid() >> 32;
		l.cgroup_id = vigil_current_cgroup_id_btf();
		bpf_get_current_comm(l.comm, sizeof(l.comm));
		bpf_map_update_elem(&listeners, &port, &l, BPF_ANY);
		return vigil_tcp_emit(sk, VIGIL_TCP_EV_LISTEN, 0, now, 0, 0, VIGIL_PROG_TCP_STATE);
	}
	if (newstate == VIGIL_TCP_SYN_RECV) {
		// A child socket of a listener: softirq, no process context.
		__u16 port = sk->__sk_common.skc_num;
		struct vigil_tcp_listener *l = bpf_map_lookup_elem(&listeners, &port);
		struct vigil_tcp_sock n = {};
		n.start_ns = now;
		n.inbound = 1;
		if (l) {
			n.pid = l->pid;
			n.cgroup_id = l->cgroup_id;
			__builtin_memcpy(n.comm, l->comm, sizeof(n.comm));
		}
		bpf_map_update_elem(&socks, &key, &n, BPF_ANY);
		return 0;
	}

	if (newstate == VIGIL_TCP_CLOSE)
		vigil_h2_tls_closed(key); // its HTTP/2-in-TLS cursor, if any (bpf/h2.h)
	s = bpf_map_lookup_elem(&socks, &key);
	if (!s || s->closed)
		return 0;
	if (newstate == VIGIL_TCP_ESTABLISHED && !s->established_ns) {
		s->established_ns = now;
		s->sport = sk->__sk_common.skc_num;
		return vigil_tcp_emit(sk, s->inbound ? VIGIL_TCP_EV_ACCEPT : VIGIL_TCP_EV_CONNECT, s, now,
				      now - s->start_ns, 0, VIGIL_PROG_TCP_STATE);
	}
	if (newstate == VIGIL_TCP_CLOSE) {
		if (s->established_ns) {
			vigil_tcp_emit(sk, VIGIL_TCP_EV_CLOSE, s, now, now - s->established_ns, 0,
				       VIGIL_PROG_TCP_STATE);
		} else if (!s->inbound) {
			__u32 err = sk->sk_err;
			vigil_tcp_emit(sk, VIGIL_TCP_EV_CONNECT_FAIL, s, now, now - s->start_ns, err,
				       VIGIL_PROG_TCP_STATE);
		}
		// Kept (LRU-bounded) rather than deleted: the kernel sends the
		// reset of an aborted connection after moving it to CLOSE, and
		// that reset is attributed from this entry.
		s->closed = 1;
	}
	return 0;
}

static __always_inline int vigil_tcp_sock_event(const struct sock *sk, __u8 kind, __u32 prog)
{
	__u64 key = (__u64)sk;
	struct vigil_tcp_sock *s;

	if (!sk)
		return 0;
	s = bpf_map_lookup_elem(&socks, &key);
	if (!s)
		return 0; // not a socket we saw open: no owner to attribute to
	return vigil_tcp_emit(sk, kind, s, bpf_ktime_get_ns(), 0, 0, prog);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(vigil_tcp_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	return vigil_tcp_sock_event(sk, VIGIL_TCP_EV_RETRANSMIT, VIGIL_PROG_TCP_RETRANSMIT);
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(vigil_tcp_receive_reset, struct sock *sk)
{
	return vigil_tcp_sock_event(sk, VIGIL_TCP_EV_RESET_RECEIVED, VIGIL_PROG_TCP_RECEIVE_RESET);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(vigil_tcp_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	return vigil_tcp_sock_event(sk, VIGIL_TCP_EV_RESET_SENT, VIGIL_PROG_TCP_SEND_RESET);
}
