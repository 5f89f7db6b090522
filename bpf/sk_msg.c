// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * sk_msg: runs on every sendmsg of a socket in mb_sockets. sockops stored the
 * peer socket's key in our socket storage when it paired us (the mirror of our
 * key, or the server socket a captured sidecar leg reaches), so the message
 * path is one storage lookup, one redirect into the peer's receive queue
 * (BPF_F_INGRESS) and two counter bumps; no key is built per message. A miss
 * always returns SK_PASS: the message takes the normal stack, never dropped.
 *
 * Ordering: a miss happens when the client writes before the server socket is
 * in mb_sockets (it is inserted when the server side sees the final ACK). The
 * missed bytes sit in the server's TCP receive queue; the receiver drains its
 * psock queue (redirected data) first, so a later redirect could overtake them.
 * After its first miss a socket is therefore pinned to the stack for good.
 *
 * Streams of small writes (see MB_STREAM_RUN in include/meshbpf.h): the stack
 * batches them and beats the redirect, so a socket that sends MB_STREAM_RUN
 * small messages in a row while its peer sends nothing moves to the stack for
 * good, the same order-safe direction as a miss. Exchanges (the peer answers)
 * and large writes keep the redirect. The turn slot is an array element: no
 * second helper lookup per message. A direct pair's switch is also recorded in
 * mb_streams (include/meshbpf.h, "Learned streams"): sockops then keeps the
 * next connections of that client to that destination off mb_sockets.
 */
#include "include/maps.h"
#include "include/ctx.h"
#include "include/splice.h"

/* At a switch, remember the pair's client address and destination (direct
 * flows only: a sidecar leg's destination is the proxy's port, shared by
 * every flow of the pod). Runs once per switched socket, never per message. */
static __always_inline void mb_stream_learn(struct bpf_sock *sk, const struct mb_sk_state *st)
{
	const struct mb_policy_key *dst;
	struct mb_stream_key k = {};
	struct mb_stream_value nv = {};
	struct mb_stream_value *v;

	if (st->leg != MB_LEG_DIRECT)
		return;
	dst = bpf_sk_storage_get(&mb_sk_splice, sk, 0, 0); /* sockops stored the destination */
	if (!dst)
		return;
	/* st->peer is the other end's key: the client's address is the remote
	 * end of the server socket's key, the local end of the client's. */
	mb_stream_key(&k, st->side == MB_SIDE_ACTIVE ? st->peer.remote_ip : st->peer.local_ip, dst,
		      st->peer.netns_cookie);
	nv.learned_ns = bpf_ktime_get_ns();
	v = bpf_map_lookup_elem(&mb_streams, &k);
	if (v) {
		v->learned_ns = nv.learned_ns;
		__sync_fetch_and_add(&v->switches, 1);
		return;
	}
	nv.first_ns = nv.learned_ns;
	nv.switches = 1;
	if (bpf_map_update_elem(&mb_streams, &k, &nv, BPF_NOEXIST) == 0)
		mb_count(MB_STAT_STREAM_LEARNED, 1);
}

SEC("sk_msg")
int mb_sk_msg(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	__u64 size = msg->size;
	struct mb_sk_state *st;

	if (!sk)
		return SK_PASS;
	st = bpf_sk_storage_get(&mb_sk_state, sk, 0, 0);
	if (!st || (st->flags & (MB_SKS_FELL_BACK | MB_SKS_PAIRED)) != MB_SKS_PAIRED) {
		/* no peer known, or pinned to the stack after an earlier miss */
		mb_count(MB_STAT_PEER_MISSING_MSGS, 1);
		mb_count(MB_STAT_PEER_MISSING_BYTES, size);
		return SK_PASS;
	}
	if (st->flags & MB_SKS_STREAM) {
		mb_count(MB_STAT_STREAM_MSGS, 1);
		mb_count(MB_STAT_STREAM_BYTES, size);
		return SK_PASS;
	}
	{
		__u32 slot = st->turn;
		__u32 *turn = bpf_map_lookup_elem(&mb_turns, &slot);

		if (turn) {
			if (*turn != st->side) {
				/* the peer sent since our last send (or this is our first) */
				*turn = st->side;
				st->run = 0;
			}
			if (size >= MB_STREAM_SMALL) {
				st->run = 0;
			} else if (++st->run >= MB_STREAM_RUN) {
				st->flags |= MB_SKS_STREAM;
				mb_stream_learn(sk, st);
				mb_count(MB_STAT_STREAM_SWITCHED, 1);
				mb_count(MB_STAT_STREAM_MSGS, 1);
				mb_count(MB_STAT_STREAM_BYTES, size);
				return SK_PASS;
			}
		}
	}
	if (bpf_msg_redirect_hash(msg, &mb_sockets, &st->peer, BPF_F_INGRESS) == SK_PASS) {
		mb_count(MB_STAT_REDIRECT_MSGS, 1);
		mb_count(MB_STAT_REDIRECT_BYTES, size);
	} else {
		mb_count(MB_STAT_PEER_MISSING_MSGS, 1);
		mb_count(MB_STAT_PEER_MISSING_BYTES, size);
		st->flags |= MB_SKS_FELL_BACK;
		mb_count(MB_STAT_SOCKETS_FELL_BACK, 1);
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
