// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Process exec and exit (sched tracepoints) and OOM kills (oom/mark_victim),
// attached as BTF-typed tracepoints so the task is read with CO-RE: the
// sched_process_exit context layout changed in 6.x, task_struct reads do not.
#pragma once
#include "common.h"

enum vigil_proc_kind {
	VIGIL_PROC_EV_EXEC = 1,
	VIGIL_PROC_EV_EXIT = 2,
	VIGIL_PROC_EV_OOM = 3,
};

// vigil_proc_event is one process event. exit_code is the kernel's wait
// status: (code << 8) | signal.
struct vigil_proc_event {
	__u64 ts_ns;
	__u64 cgroup_id;
	__u64 value; // OOM: victim's total_vm pages at mark_victim; otherwise 0
	__u32 pid;
	__u32 ppid;
	__u32 exit_code;
	__u8 kind;
	__u8 _pad[3];
	char comm[VIGIL_COMM_LEN];
};

static __always_inline int vigil_proc_emit(struct task_struct *t, __u8 kind, __u32 code, __u64 value,
					   bool urgent, __u32 prog)
{
	struct vigil_proc_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		vigil_count_lost(prog);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = vigil_task_cgroup_id(t, false);
	e->value = value;
	e->pid = BPF_CORE_READ(t, tgid);
	e->ppid = BPF_CORE_READ(t, real_parent, tgid);
	e->exit_code = code;
	e->kind = kind;
	e->_pad[0] = e->_pad[1] = e->_pad[2] = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, t, comm);
	bpf_ringbuf_submit(e, vigil_submit_flags(sizeof(*e), urgent));
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(vigil_process_exec, struct task_struct *p)
{
	return vigil_proc_emit(p, VIGIL_PROC_EV_EXEC, 0, 0, false, VIGIL_PROG_PROCESS_EXEC);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(vigil_process_exit, struct task_struct *p)
{
	__u32 code;

	// One event per process: the thread group leader's exit.
	if (BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
		return 0;
	code = BPF_CORE_READ(p, exit_code);
	if (!code)
		code = BPF_CORE_READ(p, signal, group_exit_code);
	if (!code && !exit_all)
		return 0;
	return vigil_proc_emit(p, VIGIL_PROC_EV_EXIT, code, 0, code != 0, VIGIL_PROG_PROCESS_EXIT);
}

SEC("tp_btf/mark_victim")
int BPF_PROG(vigil_oom_victim, struct task_struct *p)
{
	__u64 vm = BPF_CORE_READ(p, mm, total_vm);
	return vigil_proc_emit(p, VIGIL_PROC_EV_OOM, 0, vm, true, VIGIL_PROG_OOM_VICTIM);
}
