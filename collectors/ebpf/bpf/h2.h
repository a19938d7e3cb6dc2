// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// HTTP/2 (and so gRPC) from the socket tracepoints: a connection whose
// client preface ("PRI * HTTP/2.0...") is written or read, or an accepted
// socket whose first write is a SETTINGS frame followed by a read of the
// preface, gets a frame cursor in socket-local storage. Every later
// transfer on it is walked frame by frame: the frame headers, and the
// payloads user space needs to keep HPACK in step (HEADERS, CONTINUATION,
// PUSH_PROMISE, RST_STREAM, SETTINGS, GOAWAY), are sent as pieces tagged
// with their offset in the direction's byte stream; DATA, PING,
// WINDOW_UPDATE, PRIORITY and unknown frames are sent as their 9-byte
// header only. User space (collectors/ebpf/h2) feeds the pieces and the
// gaps between them to its decoder, which skips the gaps inside payloads
// it does not need. What the walk cannot follow (a needed payload longer
// than VIGIL_H2_MAX_NEEDED, more frames in one transfer than
// VIGIL_H2_MAX_STEPS pieces cover, bytes it cannot read, a full ring)
// marks the connection lost, in the kernel and in a record to user space:
// HPACK is stateful, so a connection never recovers from a missed piece.
#pragma once
#include "common.h"

// A needed frame payload longer than this (8 windows) loses the
// connection: a header block this large is rare, and would cost as much
// ring space as eight requests.
#define VIGIL_H2_MAX_NEEDED (8 * VIGIL_HTTP_WINDOW)
// Pieces one transfer may send (each a record of up to one window), and so
// the steps of its walk: a frame not needed costs one, a needed one one per
// window of it.
#define VIGIL_H2_MAX_STEPS 256
#define VIGIL_H2_PREFACE_LEN 24

// Record flags, in the event's has_prefix field for proto VIGIL_L7_H2.
enum vigil_h2_flag {
	VIGIL_H2_START = 1,   // the connection's first record: a new decoder
	VIGIL_H2_LOST = 2,    // the kernel stopped following the connection
	VIGIL_H2_ABANDON = 4, // not HTTP/2 after all (a SETTINGS-like first write without the preface)
};

enum vigil_h2_state {
	VIGIL_H2_CANDIDATE = 1, // a SETTINGS frame written first: HTTP/2 if the preface is read next
	VIGIL_H2_ON = 2,
	VIGIL_H2_OFF = 3, // lost: nothing more is walked
};

// vigil_h2_dir is one direction's frame cursor, in stream offsets (bytes
// of the direction since the connection was detected, modulo 2^32).
struct vigil_h2_dir {
	__u32 pos;     // offset of the next transfer
	__u32 next;    // offset of the next frame header
	__u32 send_to; // bytes before it (from the current frame's header on) are sent
	__u8 hdrn;     // bytes of the next frame header read (cut by the end of a transfer)
	__u8 _pad[3];
	__u8 hdr[16]; // the frame header being read (9 bytes used)
};

struct vigil_h2_sock {
	struct vigil_h2_dir d[2];
	__u8 state;
	__u8 started; // a record was sent (the next is not VIGIL_H2_START)
	__u8 _pad[6];
};

// h2_socks holds the cursor of each HTTP/2 socket; the kernel frees it
// with the socket. A socket without any socket-local storage costs the
// programs one pointer compare (sk_bpf_storage), so connections of other
// protocols pay nothing more.
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct vigil_h2_sock);
} h2_socks SEC(".maps");

// h2_tls holds the cursor of each HTTP/2 connection inside TLS, whose
// plaintext comes from uprobes (bpf/tls.h): a uprobe program cannot reach
// socket-local storage, so the cursor is kept by the socket's address
// (found from the descriptor) in a bounded hash, removed when the socket
// moves to TCP_CLOSE (bpf/tcp.h). LRU: a connection pushed out by 8192
// newer ones is no longer followed (its decoder waits for pieces that do
// not come and is evicted in user space).
#define VIGIL_H2_TLS_MAX 8192
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VIGIL_H2_TLS_MAX);
	__type(key, __u64);
	__type(value, struct vigil_h2_sock);
} h2_tls SEC(".maps");

// vigil_h2_tls_closed removes the cursor of a socket moved to TCP_CLOSE
// (bpf/tcp.h): its address may be a new socket's next.
static __always_inline void vigil_h2_tls_closed(__u64 key)
{
	bpf_map_delete_elem(&h2_tls, &key);
}

// vigil_h2_forget gives up the cursor of a socket: its socket-local
// storage (sk set, the socket programs), or its h2_tls entry.
static __always_inline void vigil_h2_forget(const struct sock *sk, __u64 key)
{
	if (sk)
		bpf_sk_storage_delete(&h2_socks, (struct sock *)sk);
	else
		bpf_map_delete_elem(&h2_tls, &key);
}

// vigil_h2_needed tells the frame types whose payload user space reads.
static __always_inline bool vigil_h2_needed(__u8 type)
{
	return type == 1 || type == 3 || type == 4 || type == 5 || type == 7 || type == 9;
}

struct vigil_h2_walk {
	struct vigil_h2_sock *s;
	struct vigil_http_cpu *cpu;
	const __u8 *buf;
	__u32 cur;   // bytes of the transfer walked
	__u32 n;     // bytes of it that can be read (the first buffer of a vector)
	__u32 total; // bytes transferred
	__u32 prog;
	__u8 dir;
	__u8 flags;
	__u8 err;
	__u8 _pad;
};

// vigil_h2_emit sends the len bytes of e->data (already read) as the piece
// at cur of the transfer.
static __always_inline bool vigil_h2_emit(struct vigil_h2_walk *w, struct vigil_h2_dir *d, __u32 cur, __u32 len)
{
	struct vigil_http_event *e = &w->cpu->ev;
	__u64 size, flags;

	len &= VIGIL_HTTP_CAP - 1;
	e->captured = len;
	e->off = d->pos + cur;
	e->has_prefix = w->flags;
	e->gen = http_ring_gen;
	size = offsetof(struct vigil_http_event, data) + len;
	flags = vigil_wake_mark(&w->cpu->unwoken, http_wakeup_bytes, size, false);
	if (bpf_ringbuf_output(&http_events, e, size, flags) != 0) {
		vigil_http_lost(w->prog);
		w->err = 1;
		return false;
	}
	w->flags &= ~VIGIL_H2_START;
	return true;
}

// vigil_h2_step is one step of the walk (bpf_loop's callback): send up to
// one window of needed bytes, or skip a payload not needed, or read a
// frame header. Returns 1 to stop.
static long vigil_h2_step(__u64 i, void *ctx)
{
	struct vigil_h2_walk *w = ctx;
	struct vigil_h2_sock *s = w->s;
	struct vigil_h2_dir *d;
	struct vigil_http_event *e;
	__u32 cur = w->cur, total = w->total, at, l, h, got, len, start;
	__s32 send, next;
	int j;

	if (!s || !w->cpu)
		return 1;
	if (cur >= total)
		return 1;
	d = &s->d[w->dir & 1];
	e = &w->cpu->ev;
	at = d->pos + cur;
	send = (__s32)(d->send_to - at);
	next = (__s32)(d->next - at);
	if (send > 0) {
		// Needed bytes: a needed frame's header and payload.
		l = total - cur;
		if (l > (__u32)send)
			l = send;
		if (l > VIGIL_HTTP_WINDOW)
			l = VIGIL_HTTP_WINDOW;
		if (cur + l > w->n) {
			w->err = 2; // past the buffer that can be read
			return 1;
		}
		barrier_var(l);
		l &= VIGIL_HTTP_CAP - 1;
		if (bpf_probe_read_user(e->data, l, w->buf + cur) != 0) {
			w->err = 2;
			return 1;
		}
		if (!vigil_h2_emit(w, d, cur, l))
			return 1;
		w->cur = cur + l;
		return 0;
	}
	if (next > 0) {
		// Inside a payload not needed: skipped, user space is told by
		// the next piece's offset.
		w->cur = (__u32)next >= total - cur ? total : cur + next;
		return 0;
	}
	h = d->hdrn;
	if (h >= 9 || d->next + h != at) {
		w->err = 2; // cannot happen: the cursor lost its place
		return 1;
	}
	got = 9 - h;
	if (got > total - cur)
		got = total - cur;
	if (cur + got > w->n) {
		w->err = 2;
		return 1;
	}
	barrier_var(got);
	got &= 15;
	if (bpf_probe_read_user(e->data, got, w->buf + cur) != 0) {
		w->err = 2;
		return 1;
	}
	for (j = 0; j < 9; j++) {
		if (j < got)
			d->hdr[(h + j) & 15] = e->data[j];
	}
	h += got;
	if (h < 9) {
		// The header goes on in the next transfer.
		d->hdrn = h;
		d->send_to = at + got;
		if (!vigil_h2_emit(w, d, cur, got))
			return 1;
		w->cur = total;
		return 1;
	}
	d->hdrn = 0;
	len = (__u32)d->hdr[0] << 16 | (__u32)d->hdr[1] << 8 | d->hdr[2];
	start = d->next;
	d->next = start + 9 + len;
	if (vigil_h2_needed(d->hdr[3])) {
		if (len > VIGIL_H2_MAX_NEEDED) {
			w->err = 3; // overflow
			return 1;
		}
		// The header's bytes are read again with the payload.
		d->send_to = d->next;
		return 0;
	}
	d->send_to = start + 9;
	if (!vigil_h2_emit(w, d, cur, got))
		return 1;
	w->cur = cur + got;
	return 0;
}

// vigil_h2_walk sends the pieces of one transfer of an HTTP/2 socket (n of
// its total bytes readable at buf) and moves the direction's cursor on.
// sk is the socket on the socket programs' path; 0 for TLS plaintext
// (key is then its h2_tls key), whose socket is found from fd.
static __always_inline int vigil_h2_walk(const struct sock *sk, __u64 key, struct vigil_h2_sock *s, __u32 fd,
					 const void *buf, __u64 n, __u64 total, __u8 dir, __u32 prog)
{
	__u32 zero = 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct vigil_http_cpu *cpu;
	struct vigil_http_event *e;
	struct vigil_h2_walk w = {};

	if (s->state == VIGIL_H2_OFF)
		return 0;
	cpu = bpf_map_lookup_elem(&http_scratch, &zero);
	if (!cpu)
		return 0;
	e = &cpu->ev;
	if (sk) {
		vigil_sock_addrs(sk, &e->family, &e->sport, &e->dport, e->saddr, e->daddr);
		e->cgroup_id = vigil_current_cgroup_id_btf();
	} else {
		if (!vigil_http_sock(fd, e))
			e->family = 0; // cannot happen: the caller found the socket
		e->cgroup_id = vigil_task_cgroup_id((struct task_struct *)bpf_get_current_task(), true);
	}
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->fd = fd;
	e->size = total;
	e->dir = dir;
	e->prefix = 0;
	e->window = 0;
	e->proto = VIGIL_L7_H2;
	e->tls = sk ? 0 : 1;

	w.s = s;
	w.cpu = cpu;
	w.buf = buf;
	w.n = buf ? (n < total ? n : total) : 0;
	w.total = total;
	w.prog = prog;
	w.dir = dir;
	w.flags = s->started ? 0 : VIGIL_H2_START;
	s->started = 1;
	bpf_loop(VIGIL_H2_MAX_STEPS, vigil_h2_step, &w, 0);
	if (!w.err && w.cur < w.total)
		w.err = 3; // more frames than one walk follows
	s->d[dir & 1].pos += (__u32)total;
	if (w.err) {
		e->off = 0;
		e->captured = 0;
		e->window = w.err;
		if (s->state == VIGIL_H2_CANDIDATE) {
			// A write that only looked like a SETTINGS frame, whose
			// "frames" could not be walked: not HTTP/2. Given up,
			// so the socket's transfers go the usual way again.
			vigil_h2_forget(sk, key);
			e->has_prefix = VIGIL_H2_ABANDON;
		} else {
			s->state = VIGIL_H2_OFF;
			e->has_prefix = w.flags | VIGIL_H2_LOST;
		}
		e->gen = http_ring_gen;
		if (bpf_ringbuf_output(&http_events, e, offsetof(struct vigil_http_event, data), 0) != 0)
			vigil_http_lost(prog);
	}
	return 0;
}

// vigil_h2_start creates the cursor of a socket found to be HTTP/2 by the
// transfer's first bytes (head, already read): l7 is VIGIL_L7_H2 for the
// preface, VIGIL_L7_H2_SETTINGS for a SETTINGS frame header. The preface
// is sent whole as the first piece; its frames follow.
// On the TLS path sk is 0 and key the socket's h2_tls key.
static __always_inline int vigil_h2_start(const struct sock *sk, __u64 key, __u8 l7, __u32 fd, const void *buf,
					  __u64 n, __u64 total, __u8 dir, __u32 prog)
{
	struct vigil_h2_sock *s;

	if (l7 == VIGIL_L7_H2_SETTINGS && dir != VIGIL_HTTP_WRITE)
		return 0;
	if (sk) {
		s = bpf_sk_storage_get(&h2_socks, (struct sock *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	} else {
		// The value is copied from the per-CPU scratch event's
		// data (whatever it holds: it is reset below), which saves
		// the stack its size.
		__u32 zero = 0;
		struct vigil_http_cpu *cpu = bpf_map_lookup_elem(&http_scratch, &zero);
		if (!cpu)
			return 0;
		if (bpf_map_update_elem(&h2_tls, &key, cpu->ev.data, BPF_ANY) != 0) {
			vigil_tls_h2();
			return 0;
		}
		s = bpf_map_lookup_elem(&h2_tls, &key);
	}
	if (!s)
		return 0;
	__builtin_memset(s, 0, sizeof(*s));
	s->state = VIGIL_H2_ON;
	if (l7 == VIGIL_L7_H2_SETTINGS) {
		s->state = VIGIL_H2_CANDIDATE;
	} else {
		s->d[dir & 1].next = VIGIL_H2_PREFACE_LEN;
		s->d[dir & 1].send_to = VIGIL_H2_PREFACE_LEN;
	}
	return vigil_h2_walk(sk, key, s, fd, buf, n, total, dir, prog);
}

// vigil_h2_confirm decides a candidate socket on its first read: the
// preface makes it HTTP/2; anything else gives it up (user space is told
// to forget the SETTINGS it was sent) and returns false.
static __always_inline bool vigil_h2_confirm(const struct sock *sk, __u64 key, struct vigil_h2_sock *s, __u32 fd,
					     const void *buf, __u64 n)
{
	__u8 p[8] = {};
	struct vigil_h2_dir *d = &s->d[VIGIL_HTTP_READ];
	__u32 zero = 0;
	struct vigil_http_cpu *cpu;

	if (n >= 8 && bpf_probe_read_user(p, 8, buf) == 0 && p[0] == 'P' && p[1] == 'R' && p[2] == 'I' &&
	    p[3] == ' ' && p[4] == '*' && p[5] == ' ' && p[6] == 'H' && p[7] == 'T') {
		s->state = VIGIL_H2_ON;
		d->next = VIGIL_H2_PREFACE_LEN;
		d->send_to = VIGIL_H2_PREFACE_LEN;
		return true;
	}
	s->state = VIGIL_H2_OFF;
	vigil_h2_forget(sk, key);
	cpu = bpf_map_lookup_elem(&http_scratch, &zero);
	if (cpu) {
		struct vigil_http_event *e = &cpu->ev;
		__u64 id = bpf_get_current_pid_tgid();
		__builtin_memset(e, 0, offsetof(struct vigil_http_event, data));
		e->pid = id >> 32;
		e->tid = (__u32)id;
		e->fd = fd;
		e->proto = VIGIL_L7_H2;
		e->has_prefix = VIGIL_H2_ABANDON;
		e->ts_ns = bpf_ktime_get_ns();
		e->gen = http_ring_gen;
		if (bpf_ringbuf_output(&http_events, e, offsetof(struct vigil_http_event, data), 0) != 0)
			__sync_fetch_and_add(&http_ring_gen, 1); // no program to count it against
	}
	return false;
}

// vigil_h2_sock_io handles a transfer of a socket that has socket-local
// storage (sk_bpf_storage set: a rare case but for HTTP/2 sockets). It
// returns 1 when the transfer was the HTTP/2 walk's, 0 when it goes the
// usual way.
static __always_inline int vigil_h2_sock_io(const struct sock *sk, __u32 fd, const void *buf, __u64 n, __u64 total,
					    __u8 dir, __u32 prog)
{
	struct vigil_h2_sock *s = bpf_sk_storage_get(&h2_socks, (struct sock *)sk, 0, 0);

	if (!s)
		return 0;
	if (s->state == VIGIL_H2_CANDIDATE && dir == VIGIL_HTTP_READ && !vigil_h2_confirm(sk, 0, s, fd, buf, n))
		return 0;
	vigil_h2_walk(sk, 0, s, fd, buf, n, total, dir, prog);
	return 1;
}

// vigil_h2_tls_io is vigil_h2_sock_io for TLS plaintext: the cursor is
// looked up in h2_tls by the socket's address (*key, 0 when fd is not a
// TCP socket of the process).
static __always_inline int vigil_h2_tls_io(__u64 *key, __u32 fd, const void *buf, __u64 n, __u64 total, __u8 dir,
					   __u32 prog)
{
	struct vigil_h2_sock *s;
	__u64 k = vigil_fd_sock(fd);

	*key = k;
	if (!k)
		return 0;
	s = bpf_map_lookup_elem(&h2_tls, &k);
	if (!s)
		return 0;
	if (s->state == VIGIL_H2_CANDIDATE && dir == VIGIL_HTTP_READ && !vigil_h2_confirm(0, k, s, fd, buf, n))
		return 0;
	vigil_h2_walk(0, k, s, fd, buf, n, total, dir, prog);
	return 1;
}
