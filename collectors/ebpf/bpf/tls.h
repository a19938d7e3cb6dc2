// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// TLS plaintext from uprobes on the TLS libraries' read and write calls,
// handed to the same capture as the socket's clear text (bpf/http.h), keyed
// by the same process and descriptor and marked tls in the event; the
// ciphertext the socket programs see on that connection matches none of
// the protocols (vigil_tls_record).
//
// Go's crypto/tls: an uprobe at the entry of (*Conn).Write, and of
// (*Conn).Read, whose result is taken by uprobes on the function's return
// instructions (found by user space by disassembling it): a uretprobe
// replaces the return address on the stack, which Go moves when it grows a
// goroutine's stack, and the program crashes. A read in flight is keyed by
// its goroutine (the g register), not its thread: a goroutine blocked in
// Read may resume on another thread. The descriptor is read from the
// tls.Conn's net.Conn (a *net.TCPConn's netFD), at offsets user space
// found in the executable's DWARF or knows for the Go versions it covers,
// passed in the attach cookie.
//
// OpenSSL (and libraries with its API): an uprobe and a uretprobe (fine
// for C) on SSL_read, SSL_write, SSL_read_ex and SSL_write_ex. The
// descriptor is not read from the SSL object (its layout changes between
// versions): the socket programs note the descriptor of the thread's own
// reads and writes while one of its SSL calls is in flight
// (vigil_tls_note_fd), remembered per SSL object for calls served from
// OpenSSL's buffer without a syscall.
#pragma once
#include "common.h"

#if defined(__TARGET_ARCH_arm64)
// Go's register ABI on arm64: arguments and results in R0..R15, the
// current goroutine in R28.
#define VIGIL_GO_ARG0(x) (((struct user_pt_regs *)(x))->regs[0])
#define VIGIL_GO_ARG1(x) (((struct user_pt_regs *)(x))->regs[1])
#define VIGIL_GO_ARG2(x) (((struct user_pt_regs *)(x))->regs[2])
#define VIGIL_GO_RET0(x) (((struct user_pt_regs *)(x))->regs[0])
#define VIGIL_GO_G(x) (((struct user_pt_regs *)(x))->regs[28])
#else
// On amd64: RAX, RBX, RCX, RDI, ... and the goroutine in R14.
#define VIGIL_GO_ARG0(x) ((x)->ax)
#define VIGIL_GO_ARG1(x) ((x)->bx)
#define VIGIL_GO_ARG2(x) ((x)->cx)
#define VIGIL_GO_RET0(x) ((x)->ax)
#define VIGIL_GO_G(x) ((x)->r14)
#endif

// The attach cookie of the Go programs: offsets, in bytes, of the
// tls.Conn's conn (an interface: its data word follows the type word), of
// the concrete connection's *netFD, of the netFD's poll.FD, and of the
// FD's Sysfd, one byte each from the lowest; VIGIL_GO_COOKIE_VALID set.
#define VIGIL_GO_COOKIE_VALID (1ULL << 63)
// The cookie of the OpenSSL entry programs: set for the _ex calls, whose
// fourth argument receives the bytes transferred.
#define VIGIL_SSL_COOKIE_EX 1ULL

// Counters of the TLS programs (tls_counts), by index.
enum vigil_tls_count {
	VIGIL_TLS_GO_NO_FD = 0,      // a Go call whose descriptor could not be read
	VIGIL_TLS_GO_READ_UNSEEN = 1, // a Go Read return without its entry
	VIGIL_TLS_SSL_NO_FD = 2,     // an SSL call whose socket was never seen
	VIGIL_TLS_H2 = 3,            // HTTP/2 inside TLS not followed: no room for its cursor (h2_tls)
	VIGIL_TLS_COUNT_MAX = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_TLS_COUNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tls_counts SEC(".maps");

static __always_inline void vigil_tls_count(__u32 i)
{
	__u64 *n = bpf_map_lookup_elem(&tls_counts, &i);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void vigil_tls_h2(void)
{
	vigil_tls_count(VIGIL_TLS_H2);
}

// A Go Read in flight, by process and goroutine.
struct vigil_go_key {
	__u32 pid;
	__u32 _pad;
	__u64 g;
};

struct vigil_go_read {
	__u64 buf;
	__u32 fd;
	__u32 _pad;
};

// LRU: a Read that never returns through a return instruction (a panic)
// leaves its entry to be pushed out.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct vigil_go_key);
	__type(value, struct vigil_go_read);
} go_tls_reads SEC(".maps");

// vigil_go_conn_fd reads the descriptor of the *tls.Conn c: c.conn's data
// word, a *net.TCPConn (its conn.fd a *netFD), whose pfd.Sysfd is the
// descriptor. A tls.Conn over another net.Conn gives a number that is not
// a TCP socket of the process, which vigil_http_sock turns away.
static __always_inline bool vigil_go_conn_fd(__u64 c, __u64 cookie, __u32 *fd)
{
	__u64 data = 0, nfd = 0;
	__s64 sysfd = -1;

	if (!(cookie & VIGIL_GO_COOKIE_VALID) || !c)
		return false;
	if (bpf_probe_read_user(&data, sizeof(data), (void *)(c + (cookie & 0xff) + 8)) != 0 || !data)
		return false;
	if (bpf_probe_read_user(&nfd, sizeof(nfd), (void *)(data + ((cookie >> 8) & 0xff))) != 0 || !nfd)
		return false;
	if (bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(nfd + ((cookie >> 16) & 0xff) + ((cookie >> 24) & 0xff))) != 0)
		return false;
	if (sysfd < 0 || sysfd > 0x7fffffff)
		return false;
	*fd = (__u32)sysfd;
	return true;
}

// crypto/tls.(*Conn).Write(c, b []byte): the plaintext is there at entry.
SEC("uprobe")
int vigil_go_tls_write(struct pt_regs *ctx)
{
	__u32 fd;

	if (!vigil_go_conn_fd(VIGIL_GO_ARG0(ctx), bpf_get_attach_cookie(ctx), &fd)) {
		vigil_tls_count(VIGIL_TLS_GO_NO_FD);
		return 0;
	}
	return vigil_l7_capture(fd, 0, (void *)VIGIL_GO_ARG1(ctx), VIGIL_GO_ARG2(ctx), VIGIL_GO_ARG2(ctx),
				VIGIL_HTTP_WRITE, VIGIL_PROG_GO_TLS_WRITE, 1);
}

// crypto/tls.(*Conn).Read(c, b []byte) at entry: remember the buffer and
// descriptor for the return.
SEC("uprobe")
int vigil_go_tls_read(struct pt_regs *ctx)
{
	struct vigil_go_key k = {.pid = bpf_get_current_pid_tgid() >> 32, .g = VIGIL_GO_G(ctx)};
	struct vigil_go_read r = {.buf = VIGIL_GO_ARG1(ctx)};

	if (!vigil_go_conn_fd(VIGIL_GO_ARG0(ctx), bpf_get_attach_cookie(ctx), &r.fd)) {
		vigil_tls_count(VIGIL_TLS_GO_NO_FD);
		return 0;
	}
	bpf_map_update_elem(&go_tls_reads, &k, &r, BPF_ANY);
	return 0;
}

// At each return instruction of (*Conn).Read: n is the first result.
SEC("uprobe")
int vigil_go_tls_read_ret(struct pt_regs *ctx)
{
	struct vigil_go_key k = {.pid = bpf_get_current_pid_tgid() >> 32, .g = VIGIL_GO_G(ctx)};
	struct vigil_go_read *r = bpf_map_lookup_elem(&go_tls_reads, &k);
	__s64 n = (__s64)VIGIL_GO_RET0(ctx);
	__u64 buf;
	__u32 fd;

	if (!r) {
		vigil_tls_count(VIGIL_TLS_GO_READ_UNSEEN);
		return 0;
	}
	buf = r->buf;
	fd = r->fd;
	bpf_map_delete_elem(&go_tls_reads, &k);
	if (n <= 0)
		return 0;
	return vigil_l7_capture(fd, 0, (void *)buf, n, n, VIGIL_HTTP_READ, VIGIL_PROG_GO_TLS_READ, 1);
}

// An SSL call in flight on a thread.
struct vigil_ssl_call {
	__u64 ssl;
	__u64 buf;
	__u64 out; // the _ex calls' size_t *: the bytes transferred
	__s32 fd;  // the socket its syscalls used, -1 until seen
	__u8 dir;
	__u8 ex;
	__u8 _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64); // pid_tgid
	__type(value, struct vigil_ssl_call);
} ssl_calls SEC(".maps");

// The descriptor last seen under each SSL object, for calls served from
// OpenSSL's own buffer (no syscall inside).
struct vigil_ssl_key {
	__u32 pid;
	__u32 _pad;
	__u64 ssl;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct vigil_ssl_key);
	__type(value, __u32);
} ssl_fds SEC(".maps");

// ssl_active counts SSL calls in flight on the node, so that the socket
// programs look for one only while there is any: an array lookup, which
// the verifier inlines, on every transfer; a hash lookup only then.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ssl_active SEC(".maps");

static __always_inline void vigil_tls_note_fd(__u32 fd)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&ssl_active, &zero);
	__u64 id;
	struct vigil_ssl_call *c;

	if (!n || !*n)
		return;
	id = bpf_get_current_pid_tgid();
	c = bpf_map_lookup_elem(&ssl_calls, &id);
	if (c)
		c->fd = fd;
}

static __always_inline int vigil_ssl_enter(struct pt_regs *ctx, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 zero = 0;
	__u64 *n;
	struct vigil_ssl_call c = {
		.ssl = PT_REGS_PARM1(ctx),
		.buf = PT_REGS_PARM2(ctx),
		.fd = -1,
		.dir = dir,
	};

	if (bpf_get_attach_cookie(ctx) & VIGIL_SSL_COOKIE_EX) {
		c.ex = 1;
		c.out = PT_REGS_PARM4(ctx);
	}
	if (bpf_map_update_elem(&ssl_calls, &id, &c, BPF_ANY) != 0)
		return 0;
	n = bpf_map_lookup_elem(&ssl_active, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

static __always_inline int vigil_ssl_exit(struct pt_regs *ctx, __u32 prog)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct vigil_ssl_call *cp = bpf_map_lookup_elem(&ssl_calls, &id);
	struct vigil_ssl_call c;
	struct vigil_ssl_key k = {.pid = id >> 32};
	__u32 zero = 0, *fdp;
	__u64 *active;
	__s64 ret = (__s32)PT_REGS_RC(ctx);
	__u64 n;

	if (!cp)
		return 0;
	c = *cp;
	bpf_map_delete_elem(&ssl_calls, &id);
	active = bpf_map_lookup_elem(&ssl_active, &zero);
	if (active && *active)
		__sync_fetch_and_add(active, -1);
	if (c.ex) {
		size_t done = 0;
		if (ret != 1 || bpf_probe_read_user(&done, sizeof(done), (void *)c.out) != 0)
			return 0;
		n = done;
	} else {
		if (ret <= 0)
			return 0;
		n = ret;
	}
	k.ssl = c.ssl;
	if (c.fd >= 0) {
		__u32 fd = c.fd;
		bpf_map_update_elem(&ssl_fds, &k, &fd, BPF_ANY);
	} else {
		fdp = bpf_map_lookup_elem(&ssl_fds, &k);
		if (!fdp) {
			vigil_tls_count(VIGIL_TLS_SSL_NO_FD);
			return 0;
		}
		c.fd = *fdp;
	}
	return vigil_l7_capture(c.fd, 0, (void *)c.buf, n, n, c.dir, prog, 1);
}

SEC("uprobe")
int vigil_ssl_write(struct pt_regs *ctx) { return vigil_ssl_enter(ctx, VIGIL_HTTP_WRITE); }

SEC("uretprobe")
int vigil_ssl_write_ret(struct pt_regs *ctx) { return vigil_ssl_exit(ctx, VIGIL_PROG_SSL_WRITE); }

SEC("uprobe")
int vigil_ssl_read(struct pt_regs *ctx) { return vigil_ssl_enter(ctx, VIGIL_HTTP_READ); }

SEC("uretprobe")
int vigil_ssl_read_ret(struct pt_regs *ctx) { return vigil_ssl_exit(ctx, VIGIL_PROG_SSL_READ); }
