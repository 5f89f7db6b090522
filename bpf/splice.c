// SPDX-License-Identifier: GPL-2.0
/*
 * splice detector: notice a splice(2)/sendfile(2) read of a bypassed socket.
 *
 * Redirected data waits in the receiver's psock queue (ingress_msg), which only
 * tcp_bpf_recvmsg drains. tcp_splice_read reads the TCP receive queue (through
 * tcp_read_sock): such a reader sees EOF, and what was redirected to it is
 * freed with the socket. This program cannot save those bytes (a tracepoint
 * changes nothing; see splice_refuse.c for the kernels where the read can be
 * refused first). It counts the read and records the destination in
 * mb_no_bypass, so sockops keeps every later connection to it on the stack,
 * and the agent logs it.
 *
 * Hook: the tcp_rcv_space_adjust tracepoint, which tcp_read_sock fires on
 * every call, data or not (a raw BTF tracepoint: no kprobes or trampolines
 * needed, so it also loads where fentry does not). It fires for recvmsg too;
 * the syscall number tells a splice from a read.
 */
#define MB_SPLICE_TRACING
#include "include/splice.h"
#include <bpf/bpf_core_read.h>

struct pt_regs___x86 {
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

struct pt_regs___arm64 {
	int syscallno;
} __attribute__((preserve_access_index));

struct task_struct;

/* The syscall the current task is in: splice or sendfile. Per architecture,
 * picked by what the running kernel's struct pt_regs has (CO-RE). */
static __always_inline int mb_in_splice_syscall(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	void *regs = (void *)bpf_task_pt_regs(task);
	long nr;

	if (!regs)
		return 0;
	if (bpf_core_field_exists(struct pt_regs___x86, orig_ax)) {
		nr = ((struct pt_regs___x86 *)regs)->orig_ax;
		return nr == 275 /* __NR_splice */ || nr == 40 /* __NR_sendfile */;
	}
	if (bpf_core_field_exists(struct pt_regs___arm64, syscallno)) {
		nr = ((struct pt_regs___arm64 *)regs)->syscallno;
		return nr == 76 /* __NR_splice */ || nr == 71 /* __NR_sendfile */;
	}
	return 0;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int mb_splice_seen(__u64 *ctx)
{
	struct mb_policy_key *dst = mb_bypassed_dst((struct sock *)ctx[0]);

	if (!dst || !mb_in_splice_syscall())
		return 0;
	mb_count(MB_STAT_SPLICE_READS, 1);
	mb_splice_record(dst);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
