// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Cgroup creation and removal (cgroup/cgroup_mkdir, cgroup/cgroup_rmdir),
// so that user space learns a cgroup's path from its ID before any event of
// a process inside it, even when the cgroup is gone by the time user space
// reads that event (a container that crashes at start and whose runtime
// removes the cgroup at once). The events go into the same ring buffer as
// the process events: a cgroup's mkdir is reserved before any exec or exit
// in it, and the reader sees the ring in reservation order.
#pragma once
#include "common.h"

enum vigil_cgroup_kind {
	VIGIL_CGROUP_EV_MKDIR = 1,
	VIGIL_CGROUP_EV_RMDIR = 2,
};

// VIGIL_CGROUP_PATH_LEN bounds the path sent; a longer one is marked
// truncated and user space falls back to walking the hierarchy. Kubernetes
// container cgroups (systemd driver, CRI scope) are about 200 bytes.
#define VIGIL_CGROUP_PATH_LEN 512

// cgroup_hierarchy: the hierarchy ID (as in /proc/<pid>/cgroup) whose
// cgroups are reported: 0 for the unified hierarchy, the v1 memory
// hierarchy's ID otherwise. Set by the loader.
volatile const __s32 cgroup_hierarchy = 0;

// vigil_cgroup_event is one cgroup created or removed. Its size differs
// from the other events on the ring, which is how user space tells it apart.
struct vigil_cgroup_event {
	__u64 cgroup_id; // kernfs node ID: the directory's inode number
	__s32 hierarchy;
	__u16 path_len; // bytes in path without the NUL; 0 for rmdir
	__u8 kind;
	__u8 truncated;
	char path[VIGIL_CGROUP_PATH_LEN]; // relative to the hierarchy root, e.g. "/kubepods/burstable/pod…/…"
};

static __always_inline int vigil_cgroup_emit(struct cgroup *cgrp, const char *path, __u8 kind, __u32 prog)
{
	struct vigil_cgroup_event *e;
	__s32 hier = BPF_CORE_READ(cgrp, root, hierarchy_id);
	long n;

	if (hier != cgroup_hierarchy)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		vigil_count_lost(prog);
		return 0;
	}
	e->cgroup_id = BPF_CORE_READ(cgrp, kn, id);
	e->hierarchy = hier;
	e->kind = kind;
	e->truncated = 0;
	e->path_len = 0;
	e->path[0] = 0;
	if (kind == VIGIL_CGROUP_EV_MKDIR) {
		n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
		if (n >= (long)sizeof(e->path))
			e->truncated = 1;
		if (n > 0)
			e->path_len = n - 1;
		else
			e->path[0] = 0;
	}
	// Not urgent: the reader needs it before the events that follow it on
	// the ring, which it reads in order anyway.
	bpf_ringbuf_submit(e, vigil_submit_flags(sizeof(*e), false));
	return 0;
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(vigil_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	return vigil_cgroup_emit(cgrp, path, VIGIL_CGROUP_EV_MKDIR, VIGIL_PROG_CGROUP_MKDIR);
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(vigil_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	return vigil_cgroup_emit(cgrp, path, VIGIL_CGROUP_EV_RMDIR, VIGIL_PROG_CGROUP_RMDIR);
}
