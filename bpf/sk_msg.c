// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * sk_msg: runs on every sendmsg of a socket in mb_sockets. Look up the peer
 * socket by the mirror image of our key and move the message straight into its
 * receive queue (BPF_F_INGRESS). A miss always returns SK_PASS: the message
 * takes the normal stack, never dropped. Kept minimal: one socket-storage
 * lookup, one key build, one redirect, two counter bumps.
 *
 * Ordering: a miss happens when the client writes before the server socket is
 * in mb_sockets (it is inserted when the server side sees the final ACK). The
 * missed bytes sit in the server's TCP receive queue; the receiver drains its
 * psock queue (redirected data) first, so a later redirect could overtake them.
 * After its first miss a socket is therefore pinned to the stack for good.
 */
#include "include/maps.h"
#include "include/ctx.h"

SEC("sk_msg")
int mb_sk_msg(struct sk_msg_md *msg)
{
	struct mb_sock_key self = {}, peer = {};
	struct bpf_sock *sk = msg->sk;
	__u64 size = msg->size;

	if (!sk)
		return SK_PASS;
	if (bpf_sk_storage_get(&mb_sk_state, sk, 0, 0)) {
		/* pinned to the stack after an earlier miss */
		mb_count(MB_STAT_PEER_MISSING_MSGS, 1);
		mb_count(MB_STAT_PEER_MISSING_BYTES, size);
		return SK_PASS;
	}
	if (MB_FILL_KEY(&self, msg) < 0)
		return SK_PASS;

	/* The peer's key is ours mirrored. */
	__builtin_memcpy(peer.local_ip, self.remote_ip, sizeof(peer.local_ip));
	__builtin_memcpy(peer.remote_ip, self.local_ip, sizeof(peer.remote_ip));
	peer.local_port = self.remote_port;
	peer.remote_port = self.local_port;
#ifndef MB_NO_NETNS_COOKIE /* without it, loopback sockets are never inserted */
	if (mb_ip_is_loopback(self.remote_ip))
		peer.netns_cookie = bpf_get_netns_cookie(msg);
#endif

	if (bpf_msg_redirect_hash(msg, &mb_sockets, &peer, BPF_F_INGRESS) == SK_PASS) {
		mb_count(MB_STAT_REDIRECT_MSGS, 1);
		mb_count(MB_STAT_REDIRECT_BYTES, size);
	} else {
		mb_count(MB_STAT_PEER_MISSING_MSGS, 1);
		mb_count(MB_STAT_PEER_MISSING_BYTES, size);
		if (bpf_sk_storage_get(&mb_sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE))
			mb_count(MB_STAT_SOCKETS_FELL_BACK, 1);
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
