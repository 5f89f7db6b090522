// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * cgroup/connect4 and connect6: mark who connects, never what. istio-iptables
 * exempts the proxy by owner (--uid-owner / --gid-owner 1337); sockops runs in
 * softirq context at ESTABLISHED and cannot see the owner, so the owner is
 * recorded here, in process context, in the socket's storage. The destination
 * is never rewritten and the connect is always allowed (return 1).
 *
 * Only with sidecar pairing on (mb_config), and only for TCP. A socket without
 * a mark (connected before this program was attached) is "owner unknown",
 * and sockops never treats it as a captured leg.
 */
#include "include/maps.h"

#define MB_SOCK_STREAM 1

static __always_inline int mb_mark_owner(struct bpf_sock_addr *ctx)
{
	const struct mb_config *c = mb_cfg();
	struct bpf_sock *sk = ctx->sk;
	struct mb_sk_state *st;
	__u64 ug;
	__u32 uid, gid;

	if (!c || !(c->flags & MB_CFG_SIDECAR) || ctx->type != MB_SOCK_STREAM || !sk)
		return 1;
	st = bpf_sk_storage_get(&mb_sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 1;
	ug = bpf_get_current_uid_gid();
	uid = (__u32)ug;
	gid = (__u32)(ug >> 32);
	st->flags &= ~(MB_SKS_APP | MB_SKS_PROXY);
	st->flags |= (uid == c->proxy_uid || gid == c->proxy_gid) ? MB_SKS_PROXY : MB_SKS_APP;
	return 1;
}

SEC("cgroup/connect4")
int mb_connect4(struct bpf_sock_addr *ctx)
{
	return mb_mark_owner(ctx);
}

SEC("cgroup/connect6")
int mb_connect6(struct bpf_sock_addr *ctx)
{
	return mb_mark_owner(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
