// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// HTTP/1.x, Redis and PostgreSQL seen from the socket or syscall
// tracepoints: a read or write on a TCP socket whose payload starts like an
// HTTP request or status line (or a Redis or PostgreSQL message, see
// vigil_l7_classify) is sent to user space with its first bytes (and, for a
// long HTTP request head, its next windows), which pairs requests with
// responses per process and file descriptor.
#pragma once
#include "common.h"

#define VIGIL_HTTP_CAP 512
// Each window carries up to VIGIL_HTTP_WINDOW bytes of one transfer.
#define VIGIL_HTTP_WINDOW (VIGIL_HTTP_CAP - 1)
#define VIGIL_HTTP_MAX_WINDOWS 8
// Bytes of a response sent: "HTTP/1.1 200 " and some of the reason.
#define VIGIL_HTTP_STATUS_CAP 32
#define VIGIL_S_IFMT 00170000
#define VIGIL_S_IFSOCK 0140000

#if defined(__TARGET_ARCH_arm64)
// arm64 kernels describe the user registers with struct user_pt_regs,
// which the committed (x86) vmlinux.h lacks; CO-RE matches it by name.
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#endif

// http_head_windows: how many windows of a request head are sent (the
// first and up to http_head_windows - 1 more), so that headers such as
// traceparent are found past the first window. Set by the loader.
volatile const __u32 http_head_windows = 4;

enum vigil_http_dir {
	VIGIL_HTTP_READ = 0,
	VIGIL_HTTP_WRITE = 1,
};

// vigil_http_event is one window of a read or write that looks like
// HTTP/1.x, sent without the unused tail of data (a record is the header
// and captured bytes): window 0 holds its first bytes, window i the bytes from
// i * VIGIL_HTTP_WINDOW on (request heads only). For a response (status
// line) only the first VIGIL_HTTP_STATUS_CAP bytes are sent, and the
// socket fields, cgroup and comm are zero (family 0). When a read
// lacks the first letter of its request line (Go's HTTP server reads one
// byte ahead while a keep-alive connection is idle), the letter is in
// prefix and belongs before data.
struct vigil_http_event {
	__u64 ts_ns;
	__u64 cgroup_id;
	__u32 pid;
	__u32 tid;
	__u32 fd;
	__u32 size; // bytes the syscall transferred
	__u16 sport;
	__u16 dport;
	__u16 captured; // bytes of data that are valid
	__u8 family;
	__u8 dir;
	__u8 has_prefix;
	__u8 prefix;
	__u8 window;
	__u8 proto; // enum vigil_l7_proto
	__u32 off;  // HTTP/2: the piece's offset in its direction's byte stream (h2.h)
	__u8 tls;   // plaintext of a TLS library's call (bpf/tls.h), not the socket's bytes
	__u8 _pad[3];
	__u32 gen; // http_ring_gen when sent (common.h): a change tells of lost records
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[VIGIL_COMM_LEN];
	__u8 data[VIGIL_HTTP_CAP];
};

// vigil_http_control is set by user space while the programs run (the
// overhead governor sheds load through it); zero follows everything as
// configured.
struct vigil_http_control {
	// Follow HTTP on one connection in 1 << sample_shift (0: all), chosen
	// by a hash of its ports and peer address (of process and descriptor
	// on the syscall path), so a connection's requests and responses are
	// followed or left alone together.
	__u32 sample_shift;
	// At most this many windows of a request head (0: http_head_windows).
	__u32 head_windows;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_http_control);
} http_control SEC(".maps");

// vigil_http_sampled_out reports whether the connection named by key (a
// socket's address, or process and descriptor) is left alone under the
// control's sampling. An array lookup is inlined by the verifier: a
// transfer on a connection left alone costs a few instructions.
static __always_inline bool vigil_http_sampled_out(const struct vigil_http_control *ctl, __u64 key)
{
	__u32 shift;

	if (!ctl)
		return false;
	shift = ctl->sample_shift & 31;
	if (!shift)
		return false;
	// Fibonacci hashing: the top bits of the product depend on every bit
	// of the key.
	return (key * 0x9E3779B97F4A7C15ULL) >> (64 - shift) != 0;
}

// vigil_http_cpu is each CPU's HTTP working memory: the event being built,
// copied into the ring with only its valid bytes (too large for the BPF
// stack), and the bytes this CPU submitted to http_events since it last
// woke the reader (see vigil_wake_mark). One map value, so the hot path
// touches one page for both.
struct vigil_http_cpu {
	struct vigil_http_event ev;
	__u64 unwoken;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_http_cpu);
} http_scratch SEC(".maps");

// vigil_http_looks_like reports whether b starts an HTTP/1.x request line or
// status line.
static __always_inline bool vigil_http_looks_like(const __u8 *b)
{
	switch (b[0]) {
	case 'G':
		return b[1] == 'E' && b[2] == 'T' && b[3] == ' ';
	case 'P':
		return (b[1] == 'O' && b[2] == 'S' && b[3] == 'T' && b[4] == ' ') ||
		       (b[1] == 'U' && b[2] == 'T' && b[3] == ' ') ||
		       (b[1] == 'A' && b[2] == 'T' && b[3] == 'C' && b[4] == 'H' && b[5] == ' ');
	case 'D':
		return b[1] == 'E' && b[2] == 'L' && b[3] == 'E' && b[4] == 'T' && b[5] == 'E' && b[6] == ' ';
	case 'H':
		return (b[1] == 'E' && b[2] == 'A' && b[3] == 'D' && b[4] == ' ') ||
		       (b[1] == 'T' && b[2] == 'T' && b[3] == 'P' && b[4] == '/' && b[5] == '1' && b[6] == '.');
	case 'O':
		return b[1] == 'P' && b[2] == 'T' && b[3] == 'I' && b[4] == 'O' && b[5] == 'N' && b[6] == 'S';
	}
	return false;
}

// Protocols sent on the HTTP ring, told apart by the transfer's first
// bytes (no configuration per port): the event's proto.
enum vigil_l7_proto {
	VIGIL_L7_HTTP = 0,
	VIGIL_L7_REDIS = 1,
	VIGIL_L7_POSTGRES = 2,
	VIGIL_L7_DNS = 3,     // DNS over UDP (bpf/dns.h)
	VIGIL_L7_DNS_TCP = 4, // DNS over TCP: a message after its two-byte length
	VIGIL_L7_DNS_MSG = 5, // DNS over TCP: a message written or read apart from its length
	VIGIL_L7_H2 = 6,      // HTTP/2: a piece of a frame walk (h2.h); found by its client preface
	// Not sent: a transfer that starts with a SETTINGS frame header (a
	// server's first write), HTTP/2 if the preface is read next.
	VIGIL_L7_H2_SETTINGS = 7,
};

// VIGIL_L7_REPLY marks, in vigil_l7_classify's result, a transfer that can
// only be a reply (a Redis reply type other than an array, a PostgreSQL
// backend message): like an HTTP status line it is matched in user space
// to the request on the same process and descriptor, so the socket,
// cgroup and comm are skipped.
#define VIGIL_L7_REPLY 0x80

// vigil_l7_classify tells whether b (a transfer that does not start like
// HTTP/1.x) may start a Redis (RESP2/RESP3) or PostgreSQL message, from its
// first two bytes: one switch on the first byte, so that a connection of
// none of these protocols pays that compare and nothing more. The second
// byte weeds out most text and binary data: RESP types are followed by a
// digit or sign (lengths, numbers), an upper-case error code, or a short
// status; PostgreSQL messages by the top byte of a length below 16 MiB,
// zero. What passes is checked in full by user space, which counts what it
// rejects (vigil_ebpf_protocol_rejected_total). Returns the protocol,
// or'ed with VIGIL_L7_REPLY when it can only be a reply, or 0.
static __always_inline __u8 vigil_l7_classify(const __u8 *b)
{
	__u8 c = b[1];
	bool num = (c >= '0' && c <= '9') || c == '-';

	switch (b[0]) {
	case '*': // a command (array of bulk strings), or an array reply
		return num ? VIGIL_L7_REDIS : 0;
	case '$': case '%': case '~': case '>': case '=': case '!': case '|':
	case ':': case '(':
		return num ? VIGIL_L7_REDIS | VIGIL_L7_REPLY : 0;
	case ',':
		return num || c == 'i' || c == 'n' ? VIGIL_L7_REDIS | VIGIL_L7_REPLY : 0;
	case '+':
		return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '\r' ? VIGIL_L7_REDIS | VIGIL_L7_REPLY : 0;
	case '-':
		return c >= 'A' && c <= 'Z' ? VIGIL_L7_REDIS | VIGIL_L7_REPLY : 0;
	case '_':
		return c == '\r' ? VIGIL_L7_REDIS | VIGIL_L7_REPLY : 0;
	case '#':
		return c == 't' || c == 'f' ? VIGIL_L7_REDIS | VIGIL_L7_REPLY : 0;
	case 'P': // Parse (extended protocol), or HTTP/2's client preface
		if (c == 'R')
			return b[2] == 'I' && b[3] == ' ' && b[4] == '*' && b[5] == ' ' && b[6] == 'H' && b[7] == 'T' ? VIGIL_L7_H2 : 0;
		return c == 0 ? VIGIL_L7_POSTGRES : 0;
	case 'Q': // Query (simple protocol)
	case 'B': // Bind (extended protocol, a prepared statement)
		return c == 0 ? VIGIL_L7_POSTGRES : 0;
	case 0:
		// An HTTP/2 SETTINGS frame header (length a multiple of 6 below
		// 256, type 4, no flags, stream 0): a server's first write.
		return c == 0 && b[2] % 6 == 0 && b[3] == 4 && b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 0 && b[8] == 0
			       ? VIGIL_L7_H2_SETTINGS
			       : 0;
	case '1': case '2': case '3': case 'C': case 'D': case 'E': case 'I': case 'N': case 'T': case 'Z':
	case 'n': case 's': case 't':
		// ParseComplete, BindComplete, CloseComplete, CommandComplete,
		// DataRow, ErrorResponse, EmptyQueryResponse, NoticeResponse,
		// RowDescription, ReadyForQuery, NoData, PortalSuspended,
		// ParameterDescription
		return c == 0 ? VIGIL_L7_POSTGRES | VIGIL_L7_REPLY : 0;
	}
	return 0;
}

// vigil_dns_tcp tells whether b (len bytes of a TCP transfer that is not
// HTTP) starts a DNS message: opcode QUERY (flags bits
// 11-14 zero), Z zero and one question, either at its start (a message
// written or read apart from its two-byte length, as glibc, BIND, NSD and
// Go do one way or the other) or after a length of at least 17 bytes.
// A transfer of another protocol pays the compare of its fifth byte, and
// the seventh's when the fifth is zero. Redis and PostgreSQL messages
// never pass: their fifth and sixth bytes are a length's and text, or a
// RESP type and a digit. Returns the protocol, or'ed
// with VIGIL_L7_REPLY for an answer (QR set), or 0.
static __always_inline __u8 vigil_dns_tcp(const __u8 *b, __u32 len)
{
	if (b[4] == 0 && b[5] == 1 && !(b[2] & 0x78) && !(b[3] & 0x40) && len >= 17)
		return b[2] & 0x80 ? VIGIL_L7_DNS_MSG | VIGIL_L7_REPLY : VIGIL_L7_DNS_MSG;
	if (b[6] == 0 && b[7] == 1 && !(b[4] & 0x78) && !(b[5] & 0x40) && len >= 19 && (b[0] || b[1] >= 17))
		return b[4] & 0x80 ? VIGIL_L7_DNS_TCP | VIGIL_L7_REPLY : VIGIL_L7_DNS_TCP;
	return 0;
}

// vigil_fd_sock returns the address of the TCP socket behind fd in the
// current task, or 0.
static __always_inline __u64 vigil_fd_sock(__u32 fd)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **fds;
	struct file *f = 0;
	struct sock *sk;
	__u32 max = BPF_CORE_READ(fdt, max_fds);

	if (fd >= max)
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return 0;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & VIGIL_S_IFMT) != VIGIL_S_IFSOCK)
		return 0;
	struct socket *so = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(so, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != 6)
		return 0;
	return (__u64)sk;
}

// vigil_http_sock finds the socket behind fd in the current task and fills
// the addresses; it returns false for anything but a TCP socket.
static __always_inline bool vigil_http_sock(__u32 fd, struct vigil_http_event *e)
{
	struct sock *sk = (struct sock *)vigil_fd_sock(fd);

	if (!sk)
		return false;
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == VIGIL_AF_INET) {
		__u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->saddr, &s, 4);
		__builtin_memcpy(e->daddr, &d, 4);
	} else if (e->family == VIGIL_AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return false;
	}
	return true;
}

// vigil_http_request_tail returns the first letter of the request method
// when b starts like a request line without it ("ET /" after a one-byte
// read of "G"), else 0. Every method of vigil_http_looks_like is told
// apart by its second to fourth letters.
static __always_inline __u8 vigil_http_request_tail(const __u8 *b)
{
	switch (b[0]) {
	case 'E':
		if (b[1] == 'T' && b[2] == ' ')
			return 'G';
		if (b[1] == 'A' && b[2] == 'D' && b[3] == ' ')
			return 'H';
		if (b[1] == 'L' && b[2] == 'E' && b[3] == 'T' && b[4] == 'E' && b[5] == ' ')
			return 'D';
		return 0;
	case 'O':
		return b[1] == 'S' && b[2] == 'T' && b[3] == ' ' ? 'P' : 0;
	case 'U':
		return b[1] == 'T' && b[2] == ' ' ? 'P' : 0;
	case 'A':
		return b[1] == 'T' && b[2] == 'C' && b[3] == 'H' && b[4] == ' ' ? 'P' : 0;
	case 'P':
		return b[1] == 'T' && b[2] == 'I' && b[3] == 'O' && b[4] == 'N' && b[5] == 'S' && b[6] == ' ' ? 'O' : 0;
	}
	return 0;
}

// vigil_tls_note_fd is in bpf/tls.h: it tells an OpenSSL call in flight on
// this thread which socket the call's own reads and writes use.
static __always_inline void vigil_tls_note_fd(__u32 fd);
// vigil_tls_h2 (bpf/tls.h) counts an HTTP/2 connection inside TLS that
// could not be followed (no room for its cursor).
static __always_inline void vigil_tls_h2(void);

#include "h2.h"

// vigil_tls_record tells whether b starts a TLS record (content type
// change_cipher_spec, alert, handshake or application_data, then major
// version 3): the ciphertext a TLS connection's socket carries. Its
// plaintext is taken from the TLS library (bpf/tls.h); the record itself
// must match none of the protocols, whatever its length bytes are.
static __always_inline bool vigil_tls_record(const __u8 *b)
{
	return b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 3;
}

// vigil_http_capture checks and, if it looks like HTTP, sends the first
// bytes of buf (n bytes valid) transferred on fd in direction dir, and for
// a request head longer than one window its next windows. The first window
// is read from user memory once, into the per-CPU scratch event, and the
// check is made on it: reading user memory is the dearest step (a helper
// call and a page-table walk each), so a transfer costs one such read
// whether or not it turns out to be HTTP.
// sk is the socket when the caller knows it (the socket-layer programs);
// without it the socket is found from fd.
// tls is set for the plaintext of a TLS library's call (bpf/tls.h), which
// is marked so in the event.
static __always_inline int vigil_l7_capture(__u32 fd, const struct sock *sk, const void *buf, __u64 n, __u64 total,
					    __u8 dir, __u32 prog, __u8 tls)
{
	__u64 id;
	__u8 pfx = 0, l7 = 0;
	__u32 zero = 0;
	__u64 tkey = 0;
	struct vigil_http_control *ctl;
	__u32 windows;
	struct vigil_http_cpu *cpu;
	struct vigil_http_event *tmpl;
	__u8 *head;
	__u32 len;
	__u64 size, flags;
	bool status;
	int i;

	if (!tls)
		vigil_tls_note_fd(fd);
	if (!buf || n == 0)
		return 0;
	ctl = bpf_map_lookup_elem(&http_control, &zero);
	if (!sk && vigil_http_sampled_out(ctl, (bpf_get_current_pid_tgid() & ~0xffffffffULL) | fd))
		return 0; // the socket-layer programs checked the socket before
	// HTTP/2 inside TLS: walked with its cursor in h2_tls (before the
	// one-byte read check: a walk must see every transfer).
	if (tls && vigil_h2_tls_io(&tkey, fd, buf, n, total, dir, prog))
		return 0;
	if (dir == VIGIL_HTTP_READ && n == 1)
		return 0; // Go's one-byte read-ahead: see vigil_http_request_tail
	windows = http_head_windows;
	if (ctl && ctl->head_windows && ctl->head_windows < windows)
		windows = ctl->head_windows;
	cpu = bpf_map_lookup_elem(&http_scratch, &zero);
	if (!cpu)
		return 0;
	tmpl = &cpu->ev;
	head = tmpl->data;
	// At most VIGIL_HTTP_WINDOW bytes: the mask proves the bound to the
	// verifier whatever order the compiler puts the comparison in.
	len = n >= VIGIL_HTTP_CAP ? VIGIL_HTTP_WINDOW : (__u32)n;
	barrier_var(len);
	len &= VIGIL_HTTP_CAP - 1;
	if (len < 8)
		*(__u64 *)head = 0; // the checks below look at 8 bytes: none left from an earlier event
	if (bpf_probe_read_user(head, len, buf) != 0)
		return 0;
	if (!vigil_http_looks_like(head)) {
		// A read whose request line lacks its first letter follows a
		// one-byte read of it (Go's HTTP server reads one byte while a
		// keep-alive connection is idle): the letter is put back.
		if (dir == VIGIL_HTTP_READ)
			pfx = vigil_http_request_tail(head);
		if (!pfx) {
			if (vigil_tls_record(head))
				return 0; // ciphertext: its plaintext comes from bpf/tls.h
			// DNS first: a message's first two bytes are its
			// random ID, which the Redis and PostgreSQL check
			// would take about one time in 300.
			l7 = vigil_dns_tcp(head, len);
			if (!l7)
				l7 = vigil_l7_classify(head);
			if (!l7)
				return 0;
			if (l7 == VIGIL_L7_H2 || l7 == VIGIL_L7_H2_SETTINGS) {
				// Clear text is followed on the socket path only
				// (the syscall path has no socket-local storage);
				// TLS plaintext on both, its cursor in h2_tls.
				if (sk)
					return vigil_h2_start(sk, 0, l7, fd, buf, n, total, dir, prog);
				if (tls && tkey)
					return vigil_h2_start(0, tkey, l7, fd, buf, n, total, dir, prog);
				return 0;
			}
		}
	}

	id = bpf_get_current_pid_tgid();
	status = !pfx && !l7 && head[0] == 'H' && head[1] == 'T';
	if (l7 & VIGIL_L7_REPLY) {
		// Like a status line, but all of the first window is sent: a
		// pipeline's replies, a result's rows before its error.
		__builtin_memset(tmpl, 0, offsetof(struct vigil_http_event, data));
	} else if (status) {
		// A response is matched in user space to the request on the
		// same process and descriptor, which carries the socket and
		// workload: skip the descriptor walk and the cgroup lookup.
		__builtin_memset(tmpl, 0, offsetof(struct vigil_http_event, data));
		if (len > VIGIL_HTTP_STATUS_CAP)
			len = VIGIL_HTTP_STATUS_CAP; // the status line's start is enough
	} else if (sk) {
		vigil_sock_addrs(sk, &tmpl->family, &tmpl->sport, &tmpl->dport, tmpl->saddr, tmpl->daddr);
		tmpl->cgroup_id = vigil_current_cgroup_id_btf();
		bpf_get_current_comm(tmpl->comm, sizeof(tmpl->comm));
	} else {
		if (!vigil_http_sock(fd, tmpl))
			return 0;
		tmpl->cgroup_id = vigil_task_cgroup_id((struct task_struct *)bpf_get_current_task(), true);
		bpf_get_current_comm(tmpl->comm, sizeof(tmpl->comm));
	}
	tmpl->ts_ns = bpf_ktime_get_ns();
	tmpl->pid = id >> 32;
	tmpl->tid = (__u32)id;
	tmpl->fd = fd;
	tmpl->size = n;
	tmpl->dir = dir;
	tmpl->has_prefix = pfx ? 1 : 0;
	tmpl->prefix = pfx;
	tmpl->window = 0;
	tmpl->proto = l7 & ~VIGIL_L7_REPLY;
	tmpl->off = 0;
	tmpl->tls = tls;
	__builtin_memset(tmpl->_pad, 0, sizeof(tmpl->_pad));
	tmpl->gen = http_ring_gen;

	for (i = 0; i < VIGIL_HTTP_MAX_WINDOWS; i++) {
		__u64 off = (__u64)i * VIGIL_HTTP_WINDOW;

		if (i > 0) {
			// Later windows only for HTTP request heads (a status
			// line is all that is read of a response), and only as
			// configured.
			if (off >= n || i >= windows || status || l7)
				break;
			tmpl->window = i;
			len = n - off >= VIGIL_HTTP_CAP ? VIGIL_HTTP_WINDOW : (__u32)(n - off);
			barrier_var(len);
			len &= VIGIL_HTTP_CAP - 1;
			if (bpf_probe_read_user(tmpl->data, len, buf + off) != 0)
				len = 0;
		}
		len &= VIGIL_HTTP_CAP - 1;
		tmpl->captured = len;
		// Only the valid bytes go into the ring: most records are a few
		// hundred bytes, so fewer cache lines are written and read.
		size = offsetof(struct vigil_http_event, data) + len;
		flags = vigil_wake_mark(&cpu->unwoken, http_wakeup_bytes, size, false);
		if (bpf_ringbuf_output(&http_events, tmpl, size, flags) != 0) {
			vigil_http_lost(prog);
			return 0;
		}
	}
	return 0;
}

static __always_inline int vigil_http_capture(__u32 fd, const struct sock *sk, const void *buf, __u64 n, __u64 total,
					      __u8 dir, __u32 prog)
{
	return vigil_l7_capture(fd, sk, buf, n, total, dir, prog, 0);
}

// vigil_http_exit_read handles the end of a read-like syscall: its
// arguments are still in the task's saved user registers, so no program
// runs at syscall entry.
static __always_inline int vigil_http_exit_read(struct trace_event_raw_sys_exit *ctx, __u8 vec, __u32 prog)
{
	long ret = ctx->ret;
	struct pt_regs *regs;
	__u64 buf;
	__u32 fd;

	if (ret <= 0)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	fd = (__u32)PT_REGS_PARM1_SYSCALL(regs);
	buf = PT_REGS_PARM2_SYSCALL(regs);
	if (vec) {
		struct iovec iov = {};
		bpf_probe_read_user(&iov, sizeof(iov), (void *)buf);
		buf = (__u64)iov.iov_base;
		if (ret > (long)iov.iov_len)
			ret = iov.iov_len;
	}
	return vigil_http_capture(fd, 0, (void *)buf, ret, ret, VIGIL_HTTP_READ, prog);
}

SEC("tracepoint/syscalls/sys_exit_read")
int vigil_http_exit_read_(struct trace_event_raw_sys_exit *ctx) { return vigil_http_exit_read(ctx, 0, VIGIL_PROG_HTTP_READ); }

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int vigil_http_exit_recvfrom(struct trace_event_raw_sys_exit *ctx) { return vigil_http_exit_read(ctx, 0, VIGIL_PROG_HTTP_RECVFROM); }

SEC("tracepoint/syscalls/sys_exit_readv")
int vigil_http_exit_readv(struct trace_event_raw_sys_exit *ctx) { return vigil_http_exit_read(ctx, 1, VIGIL_PROG_HTTP_READV); }

SEC("tracepoint/syscalls/sys_enter_write")
int vigil_http_write(struct trace_event_raw_sys_enter *ctx)
{
	return vigil_http_capture((__u32)ctx->args[0], 0, (void *)ctx->args[1], ctx->args[2], ctx->args[2], VIGIL_HTTP_WRITE, VIGIL_PROG_HTTP_WRITE);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int vigil_http_sendto(struct trace_event_raw_sys_enter *ctx)
{
	return vigil_http_capture((__u32)ctx->args[0], 0, (void *)ctx->args[1], ctx->args[2], ctx->args[2], VIGIL_HTTP_WRITE, VIGIL_PROG_HTTP_SENDTO);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int vigil_http_writev(struct trace_event_raw_sys_enter *ctx)
{
	struct iovec iov = {};

	if (ctx->args[2] < 1)
		return 0;
	bpf_probe_read_user(&iov, sizeof(iov), (void *)ctx->args[1]);
	return vigil_http_capture((__u32)ctx->args[0], 0, iov.iov_base, iov.iov_len, iov.iov_len, VIGIL_HTTP_WRITE, VIGIL_PROG_HTTP_WRITEV);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int vigil_http_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	struct user_msghdr msg = {};
	struct iovec iov = {};

	bpf_probe_read_user(&msg, sizeof(msg), (void *)ctx->args[1]);
	if (!msg.msg_iov || msg.msg_iovlen < 1)
		return 0;
	bpf_probe_read_user(&iov, sizeof(iov), msg.msg_iov);
	return vigil_http_capture((__u32)ctx->args[0], 0, iov.iov_base, iov.iov_len, iov.iov_len, VIGIL_HTTP_WRITE, VIGIL_PROG_HTTP_SENDMSG);
}

// The socket-layer path (sock/sock_send_length and sock/sock_recv_length,
// Linux 6.4+): the tracepoints fire inside the socket's send and receive,
// with the socket at hand, so no descriptor is walked and no syscall
// tracepoint is enabled. The syscall's own arguments (descriptor, buffer)
// are read from the task's saved user registers; anything but the
// syscalls the syscall-tracepoint path covers (kernel threads, io_uring,
// sendfile, MSG_PEEK) is left alone, so both paths see the same traffic.

#if defined(__TARGET_ARCH_arm64)
struct pt_regs___vigil {
	__s64 syscallno;
} __attribute__((preserve_access_index));
#define VIGIL_SYSCALL_NR(regs) BPF_CORE_READ((struct pt_regs___vigil *)(regs), syscallno)
// Syscall numbers of the generic table (asm-generic/unistd.h).
#define VIGIL_NR_READ 63
#define VIGIL_NR_WRITE 64
#define VIGIL_NR_READV 65
#define VIGIL_NR_WRITEV 66
#define VIGIL_NR_SENDTO 206
#define VIGIL_NR_RECVFROM 207
#define VIGIL_NR_SENDMSG 211
#define VIGIL_NR_RECVMSG 212
#define VIGIL_NR_RECVMMSG 243
#define VIGIL_NR_SENDMMSG 269
#else
#define VIGIL_SYSCALL_NR(regs) ((regs)->orig_ax)
// x86-64 syscall numbers (a 32-bit task's numbers never match a socket
// syscall here: its read and write are 3 and 4).
#define VIGIL_NR_READ 0
#define VIGIL_NR_WRITE 1
#define VIGIL_NR_READV 19
#define VIGIL_NR_WRITEV 20
#define VIGIL_NR_SENDTO 44
#define VIGIL_NR_RECVFROM 45
#define VIGIL_NR_SENDMSG 46
#define VIGIL_NR_RECVMSG 47
#define VIGIL_NR_RECVMMSG 299
#define VIGIL_NR_SENDMMSG 307
#endif
#define VIGIL_MSG_PEEK 2

enum vigil_http_arg {
	VIGIL_HTTP_ARG_NONE = 0,
	VIGIL_HTTP_ARG_BUF = 1,    // second argument is the buffer
	VIGIL_HTTP_ARG_IOVEC = 2,  // second argument is an iovec array
	VIGIL_HTTP_ARG_MSGHDR = 3, // second argument is a struct user_msghdr
	VIGIL_HTTP_ARG_MMSG = 4,   // second argument is a struct mmsghdr array (DNS over UDP only)
};

#include "dns.h"

static __always_inline int vigil_http_sock_io(const struct sock *sk, int ret, __u8 dir, __u32 prog)
{
	struct task_struct *t;
	struct pt_regs *regs;
	__u64 arg, n = ret;
	__u8 kind = VIGIL_HTTP_ARG_NONE;
	__u32 fd, zero = 0;
	__u64 iovcnt = 0;
	bool h2;
	long nr;

	if (sk->sk_protocol != VIGIL_IPPROTO_TCP) {
		// A datagram costs one more compare, and its ports a few
		// (vigil_dns_udp); any other socket leaves here.
		if (sk->sk_protocol == VIGIL_IPPROTO_UDP)
			return vigil_dns_udp(sk, ret, dir, prog);
		return 0;
	}
	if (ret <= 0)
		return 0;
	// A socket with socket-local storage is most likely HTTP/2 (h2.h):
	// every byte of it is accounted for, whatever the sampling. Other
	// sockets pay this one compare.
	h2 = sk->sk_bpf_storage != 0;
	if (!h2) {
		if (dir == VIGIL_HTTP_READ && ret == 1)
			return 0; // Go's one-byte read-ahead: see vigil_http_request_tail
		// A connection is named by its ports and peer address (the socket's
		// address itself cannot be used as a number in a tp_btf program).
		if (vigil_http_sampled_out(bpf_map_lookup_elem(&http_control, &zero),
					   ((__u64)sk->__sk_common.skc_portpair << 32) | sk->__sk_common.skc_daddr))
			return 0;
	}
	t = bpf_get_current_task_btf();
	// Kernel threads and io_uring workers have no syscall of their own
	// in their saved registers (an HTTP/2 walk then has nothing to read:
	// it loses the connection unless the bytes are inside a payload it
	// skips).
	if (t->flags & (VIGIL_PF_KTHREAD | VIGIL_PF_IO_WORKER)) {
		if (h2)
			vigil_h2_sock_io(sk, 0, 0, 0, ret, dir, prog);
		return 0;
	}
	regs = (struct pt_regs *)bpf_task_pt_regs(t);
	nr = VIGIL_SYSCALL_NR(regs);
	if (dir == VIGIL_HTTP_READ) {
		if (nr == VIGIL_NR_READ || nr == VIGIL_NR_RECVFROM)
			kind = VIGIL_HTTP_ARG_BUF;
		else if (nr == VIGIL_NR_READV)
			kind = VIGIL_HTTP_ARG_IOVEC;
	} else {
		if (nr == VIGIL_NR_WRITE || nr == VIGIL_NR_SENDTO)
			kind = VIGIL_HTTP_ARG_BUF;
		else if (nr == VIGIL_NR_WRITEV)
			kind = VIGIL_HTTP_ARG_IOVEC;
		else if (nr == VIGIL_NR_SENDMSG)
			kind = VIGIL_HTTP_ARG_MSGHDR;
	}
	fd = (__u32)PT_REGS_PARM1_SYSCALL(regs);
	if (kind == VIGIL_HTTP_ARG_NONE) {
		if (h2)
			vigil_h2_sock_io(sk, fd, 0, 0, ret, dir, prog);
		return 0;
	}
	arg = PT_REGS_PARM2_SYSCALL(regs);
	if (kind == VIGIL_HTTP_ARG_IOVEC)
		iovcnt = PT_REGS_PARM3_SYSCALL(regs);
	if (kind == VIGIL_HTTP_ARG_MSGHDR) {
		struct user_msghdr msg = {};
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)arg) != 0 || !msg.msg_iov || msg.msg_iovlen < 1) {
			if (h2)
				vigil_h2_sock_io(sk, fd, 0, 0, ret, dir, prog);
			return 0;
		}
		arg = (__u64)msg.msg_iov;
		iovcnt = msg.msg_iovlen;
		kind = VIGIL_HTTP_ARG_IOVEC;
	}
	if (kind == VIGIL_HTTP_ARG_IOVEC) {
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)arg) != 0)
			iov.iov_base = 0; // an HTTP/2 walk reads nothing
		if (h2) {
			// The first buffer is walked; a frame header or needed
			// payload in a later one loses the connection.
			if (n > iov.iov_len)
				n = iov.iov_len;
			if (vigil_h2_sock_io(sk, fd, iov.iov_base, n, ret, dir, prog))
				return 0;
		}
		if (!iov.iov_base)
			return 0;
		if (iov.iov_len == 2 && iovcnt >= 2 && n > 2) {
			// A two-byte first buffer: DNS over TCP's length, written
			// apart from its message (glibc, BIND, NSD): the message
			// is in the second buffer (vigil_dns_tcp).
			n -= 2;
			if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(arg + sizeof(iov))) != 0)
				return 0;
		}
		arg = (__u64)iov.iov_base;
		if (n > iov.iov_len)
			n = iov.iov_len;
	}
	if (h2 && kind == VIGIL_HTTP_ARG_BUF && vigil_h2_sock_io(sk, fd, (void *)arg, n, ret, dir, prog))
		return 0;
	if (h2 && dir == VIGIL_HTTP_READ && ret == 1)
		return 0;
	return vigil_http_capture(fd, sk, (void *)arg, n, ret, dir, prog);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(vigil_http_sock_send, struct sock *sk, int ret, int flags)
{
	return vigil_http_sock_io(sk, ret, VIGIL_HTTP_WRITE, VIGIL_PROG_HTTP_SOCK_SEND);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(vigil_http_sock_recv, struct sock *sk, int ret, int flags)
{
	if (flags & VIGIL_MSG_PEEK)
		return 0; // the data is read again without MSG_PEEK
	return vigil_http_sock_io(sk, ret, VIGIL_HTTP_READ, VIGIL_PROG_HTTP_SOCK_RECV);
}
