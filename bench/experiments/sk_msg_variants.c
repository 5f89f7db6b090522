// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * EXPERIMENTAL variants of bpf/sk_msg.c for the small-writes investigation
 * (bench/experiments/small-writes.ts loads them over a throwaway node; the
 * product programs in bpf/ are untouched). Same key build and redirect as
 * mb_sk_msg, plus one helper each:
 *
 *   mbx_apply: bpf_msg_apply_bytes(1 MiB): the verdict covers the next 1 MiB,
 *              so the program and the sockhash lookup run once per MiB, not
 *              once per write. Safe for any traffic (nothing is held back).
 *   mbx_cork:  bpf_msg_cork_bytes(16 KiB): the kernel accumulates writes until
 *              16 KiB are queued, then runs the program once and redirects
 *              16 KiB. Batches like TCP autocorking, but with no timer: a
 *              shorter request waits for more data, forever if none comes.
 */
#include "include/maps.h"
#include "include/ctx.h"

#define MBX_APPLY_BYTES (1 << 20)
#define MBX_CORK_BYTES 16384

static __always_inline int mbx_redirect(struct sk_msg_md *msg, __u64 size)
{
	struct mb_sock_key self = {}, peer = {};

	if (MB_FILL_KEY(&self, msg) < 0)
		return SK_PASS;
	__builtin_memcpy(peer.local_ip, self.remote_ip, sizeof(peer.local_ip));
	__builtin_memcpy(peer.remote_ip, self.local_ip, sizeof(peer.remote_ip));
	peer.local_port = self.remote_port;
	peer.remote_port = self.local_port;
	if (mb_ip_is_loopback(self.remote_ip))
		peer.netns_cookie = bpf_get_netns_cookie(msg);
	if (bpf_msg_redirect_hash(msg, &mb_sockets, &peer, BPF_F_INGRESS) == SK_PASS) {
		mb_count(MB_STAT_REDIRECT_MSGS, 1);
		mb_count(MB_STAT_REDIRECT_BYTES, size);
	} else {
		mb_count(MB_STAT_PEER_MISSING_MSGS, 1);
		mb_count(MB_STAT_PEER_MISSING_BYTES, size);
	}
	return SK_PASS;
}

SEC("sk_msg")
int mbx_apply(struct sk_msg_md *msg)
{
	__u64 size = msg->size;

	bpf_msg_apply_bytes(msg, MBX_APPLY_BYTES);
	return mbx_redirect(msg, size);
}

SEC("sk_msg")
int mbx_cork(struct sk_msg_md *msg)
{
	__u64 size = msg->size;

	if (size < MBX_CORK_BYTES) {
		/* Hold the data; the program runs again once 16 KiB are queued. */
		bpf_msg_cork_bytes(msg, MBX_CORK_BYTES);
		return SK_PASS;
	}
	return mbx_redirect(msg, size);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
