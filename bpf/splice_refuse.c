// SPDX-License-Identifier: GPL-2.0
/*
 * splice refusal: no loss for readers that splice(2) a bypassed socket.
 *
 * Redirected data waits in the receiver's psock queue (ingress_msg), which only
 * tcp_bpf_recvmsg drains; tcp_splice_read reads the TCP receive queue, so a
 * splicing reader sees EOF and the redirected bytes die with the socket. The
 * kernel (up to 6.18 at least) gives splice no psock path, and nothing in BPF
 * can move ingress_msg back to the receive queue (dropping the psock frees it).
 *
 * So the splice is refused before anything is read:
 *   fentry/do_splice      the input is a socket meshbpf bypassed (sockops
 *                         marked it, and it still has a psock): flag this task,
 *                         record the destination in mb_no_bypass (sockops then
 *                         keeps later connections to it on the stack);
 *   fmod_ret/security_file_permission
 *                         the MAY_READ check of that splice (rw_verify_area,
 *                         before ->splice_read) fails with EINVAL, the errno
 *                         for "this fd cannot splice": Go's io.Copy and HAProxy
 *                         then fall back to read(2), which drains the psock;
 *   fexit/do_splice       clear the flag if the check was never reached.
 * Same for do_splice_direct (sendfile(2) from a socket).
 *
 * fmod_ret is allowed on security_* functions without CONFIG_BPF_LSM or the
 * "bpf" LSM being enabled. The hook runs for every read/write permission check
 * on the node: its fast path is one load of a global while no guarded splice
 * is in flight. GPL: tracing helpers (bpf_get_current_comm...) require it.
 */
#define MB_SPLICE_TRACING
#include "include/splice.h"

#define MB_MAY_READ 4 /* include/linux/fs.h */
#define MB_EINVAL 22

struct file;

/* Tasks inside a guarded splice: pid_tgid -> 1. Local to this object. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} mb_splicing SEC(".maps");

/* Entries in mb_splicing: lets every other read/write on the node skip the
 * hash lookup. */
__s64 mb_splice_live = 0;

static __always_inline int mb_splice_enter(struct file *in)
{
	struct socket *sock = bpf_sock_from_file(in);
	struct mb_policy_key *dst;
	__u64 id, one = 1;

	if (!sock)
		return 0;
	dst = mb_bypassed_dst(sock->sk);
	if (!dst)
		return 0;
	id = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&mb_splicing, &id, &one, BPF_NOEXIST) == 0)
		__sync_fetch_and_add(&mb_splice_live, 1);
	mb_splice_record(dst);
	return 0;
}

static __always_inline void mb_splice_clear(void)
{
	__u64 id;

	if (!mb_splice_live)
		return;
	id = bpf_get_current_pid_tgid();
	if (bpf_map_delete_elem(&mb_splicing, &id) == 0)
		__sync_fetch_and_add(&mb_splice_live, -1);
}

SEC("fentry/do_splice")
int mb_splice_in(__u64 *ctx)
{
	return mb_splice_enter((struct file *)ctx[0]);
}

SEC("fexit/do_splice")
int mb_splice_out(__u64 *ctx)
{
	mb_splice_clear();
	return 0;
}

SEC("fentry/do_splice_direct")
int mb_sendfile_in(__u64 *ctx)
{
	return mb_splice_enter((struct file *)ctx[0]);
}

SEC("fexit/do_splice_direct")
int mb_sendfile_out(__u64 *ctx)
{
	mb_splice_clear();
	return 0;
}

/* int security_file_permission(struct file *file, int mask); ctx[2] is the
 * return value of any fmod_ret program that ran before this one. */
SEC("fmod_ret/security_file_permission")
int mb_splice_refuse(__u64 *ctx)
{
	struct file *file = (struct file *)ctx[0];
	int mask = (int)ctx[1];
	int ret = (int)ctx[2];
	__u64 id;

	if (ret || !mb_splice_live || !(mask & MB_MAY_READ))
		return ret;
	id = bpf_get_current_pid_tgid();
	if (!bpf_map_lookup_elem(&mb_splicing, &id))
		return 0;
	/* Inside a guarded splice, the socket's read check is the only MAY_READ
	 * on a socket (the other end is a pipe or a file). */
	if (!bpf_sock_from_file(file))
		return 0;
	if (bpf_map_delete_elem(&mb_splicing, &id) == 0)
		__sync_fetch_and_add(&mb_splice_live, -1);
	mb_count(MB_STAT_SPLICE_REFUSED, 1);
	return -MB_EINVAL;
}

char LICENSE[] SEC("license") = "GPL";
