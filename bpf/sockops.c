// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * sockops: on every ESTABLISHED TCP socket in the attached cgroup, decide if
 * the connection may be short-circuited and, if so, put the socket into
 * mb_sockets with the key of its peer in its socket storage (where sk_msg
 * finds it). Every outcome is counted by reason.
 *
 * Direct (no capture): both ends are LOCAL addresses of the same network in
 * mb_endpoints, and mb_policy says BYPASS for the server side. The peer's key
 * is ours mirrored.
 *
 * Sidecar legs (mb_config says MB_CFG_SIDECAR): Istio's iptables stay in each
 * captured pod and decide where every connection goes; meshbpf only pairs the
 * two sockets of one leg, so both sidecars stay in the path. A leg's sockets do
 * not mirror (REDIRECT rewrote the destination), so the client states which
 * server socket it expects (mb_legs, keyed by its own address) and the server
 * is paired only if its own key is exactly that claim. The client side
 * classifies with the same rules istio-iptables writes (ISTIO_OUTPUT /
 * ISTIO_INBOUND); the owner (app or proxy uid/gid) comes from the connect hook.
 *
 * In-pod (Istio ambient): istio-cni's rules in each pod's namespace send every
 * TCP connection to ztunnel, except from sockets marked 0x539. For a flow
 * between two enrolled pods (mb_inpod) that the direct rule would bypass, the
 * client socket gets that mark before its SYN leaves (TCP_CONNECT_CB: its own
 * pod's outbound capture is skipped) and a claim in mb_legs; the server pod's
 * sk_lookup program (bpf/inpod.c) hands that SYN to the app's own listener
 * although the inbound REDIRECT sent it to 15006, and marks the claim
 * STEERED. Both sockets pair only if it did. Every other connection is
 * captured as before. Listeners of enrolled pods are recorded at LISTEN.
 */
#include "include/maps.h"
#include "include/ctx.h"
#include "include/splice.h"

#define MB_SOL_SOCKET 1
#define MB_SO_MARK 36

static __always_inline int mb_is_local(const struct mb_endpoint_value *e)
{
	return e && (e->flags & MB_EP_LOCAL);
}

static __always_inline void mb_mirror(struct mb_sock_key *peer, const struct mb_sock_key *self)
{
	__builtin_memcpy(peer->local_ip, self->remote_ip, sizeof(peer->local_ip));
	__builtin_memcpy(peer->remote_ip, self->local_ip, sizeof(peer->remote_ip));
	peer->local_port = self->remote_port;
	peer->remote_port = self->local_port;
	peer->netns_cookie = self->netns_cookie;
}

/* A 32-bit mix of a socket key (multiply-xor over its words). */
static __always_inline __u32 mb_key_mix(const struct mb_sock_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 h = 0;

#pragma unroll
	for (int i = 0; i < MB_SOCK_KEY_SIZE / 4; i++)
		h = (h ^ w[i]) * 0x9e3779b1u;
	return h;
}

/* The pair's mb_turns slot: symmetric in the two keys, so both ends agree. */
static __always_inline __u16 mb_turn_slot(const struct mb_sock_key *self, const struct mb_sock_key *peer)
{
	return (__u16)((((mb_key_mix(self) ^ mb_key_mix(peer)) * 0x85ebca6bu) >> 16) & (MB_TURN_SLOTS - 1));
}

/* 1 = the pair (client address, destination) switched to the stack less than
 * MB_STREAM_LEARN_NS ago: keep this socket out of mb_sockets. */
static __always_inline int mb_stream_learned(const struct mb_sock_key *self,
					     const struct mb_policy_key *dst, int active)
{
	struct mb_stream_key k = {};
	struct mb_stream_value *v;

	mb_stream_key(&k, active ? self->local_ip : self->remote_ip, dst, self->netns_cookie);
	v = bpf_map_lookup_elem(&mb_streams, &k);
	if (!v || bpf_ktime_get_ns() - v->learned_ns >= MB_STREAM_LEARN_NS)
		return 0;
	__sync_fetch_and_add(&v->kept, 1);
	mb_count(MB_STAT_STREAM_KEPT, 1);
	return 1;
}

/* Insert the socket under `self`, remembering `peer` for sk_msg. `dst` is the
 * server side of the pair (what operators and the splice guard exclude). */
static __always_inline int mb_pair(struct bpf_sock_ops *skops, struct mb_sock_key *self,
				   const struct mb_sock_key *peer, __u32 leg, struct mb_policy_key *dst)
{
	struct bpf_sock *sk = skops->sk;
	struct mb_sk_state *st;
	int err; /* int: 6.1 returns these errors zero-extended in 64 bits (seen in the VM) */

	if (!sk)
		return -1;
	/* a learned stream (include/meshbpf.h): this pair's last connections were
	 * one-way streams of small writes, which the stack moves faster */
	if (leg == MB_LEG_DIRECT && mb_stream_learned(self, dst, skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB))
		return -1;
	/* splice guard (include/splice.h): excluded destinations stay on the stack */
	if (mb_splice_guard(skops, dst))
		return -1;
	st = bpf_sk_storage_get(&mb_sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		mb_count(MB_STAT_INSERT_FAILED, 1);
		return -1;
	}
	/* Written before the insert: sk_msg runs only once the socket is in
	 * mb_sockets, and then finds a complete peer key. */
	__builtin_memcpy(&st->peer, peer, sizeof(st->peer));
	st->leg = leg;
	st->turn = mb_turn_slot(self, peer);
	st->side = skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ? MB_SIDE_ACTIVE : MB_SIDE_PASSIVE;
	st->run = 0;
	st->flags |= MB_SKS_PAIRED;

	/* BPF_NOEXIST: never displace another live socket with the same key. */
	err = bpf_sock_hash_update(skops, &mb_sockets, self, BPF_NOEXIST);
	if (err) {
		st->flags &= ~MB_SKS_PAIRED;
		if (err == -7 /* -E2BIG: map full */ || err == -12 /* -ENOMEM */)
			mb_count(MB_STAT_MAP_FULL, 1);
		else
			mb_count(MB_STAT_INSERT_FAILED, 1);
		return -1;
	}
	mb_count(MB_STAT_INSERTED, 1);
	if (leg == MB_LEG_OUTBOUND)
		mb_count(MB_STAT_LEG_OUTBOUND, 1);
	else if (leg == MB_LEG_MESH)
		mb_count(MB_STAT_LEG_MESH, 1);
	else if (leg == MB_LEG_INBOUND)
		mb_count(MB_STAT_LEG_INBOUND, 1);
	else if (leg == MB_LEG_INPOD)
		mb_count(MB_STAT_LEG_INPOD, 1);
	return 0;
}

/* The direct rule (no capture in between): mirror-image keys, verdict BYPASS. */
static __always_inline void mb_direct(struct bpf_sock_ops *skops, struct mb_sock_key *key, int active,
				      const struct mb_endpoint_value *le, const struct mb_endpoint_value *re)
{
	struct mb_policy_key pk = {};
	const struct mb_policy_value *pv;
	struct mb_sock_key peer = {};

	if (!mb_is_local(le)) {
		mb_count(MB_STAT_SKIP_LOCAL_UNKNOWN, 1);
		return;
	}
	if (!mb_is_local(re)) {
		mb_count(MB_STAT_SKIP_REMOTE_UNKNOWN, 1);
		return;
	}
	if (le->network_id != re->network_id) {
		mb_count(MB_STAT_SKIP_NETWORK, 1);
		return;
	}

	/* The verdict belongs to the server side: the remote end for the socket
	 * that connected (active), our own end for the accepted one (passive). */
	if (active) {
		__builtin_memcpy(pk.ip, key->remote_ip, sizeof(pk.ip));
		pk.port = key->remote_port;
	} else {
		__builtin_memcpy(pk.ip, key->local_ip, sizeof(pk.ip));
		pk.port = key->local_port;
	}
	pv = bpf_map_lookup_elem(&mb_policy, &pk);
	if (!pv || pv->verdict == MB_VERDICT_NONE) {
		mb_count(MB_STAT_SKIP_NO_POLICY, 1);
		return;
	}
	if (pv->verdict != MB_VERDICT_BYPASS) {
		mb_count(MB_STAT_SKIP_PROXY, 1);
		return;
	}

	if (mb_ip_is_loopback(key->remote_ip)) {
#ifdef MB_NO_NETNS_COOKIE
		/* Kernels without bpf_get_netns_cookie here (< 5.15) cannot tell
		 * two namespaces' 127.0.0.1 apart: never accelerate loopback. */
		mb_count(MB_STAT_SKIP_LOOPBACK, 1);
		return;
#else
		key->netns_cookie = bpf_get_netns_cookie(skops);
#endif
	}
	mb_mirror(&peer, key);
	mb_pair(skops, key, &peer, MB_LEG_DIRECT, &pk);
}

#ifndef MB_NO_NETNS_COOKIE /* sidecar legs need the netns cookie (loopback legs) */

static __always_inline int mb_key_eq(const struct mb_sock_key *a, const struct mb_sock_key *b)
{
	return mb_ip_eq(a->local_ip, b->local_ip) && mb_ip_eq(a->remote_ip, b->remote_ip) &&
	       a->local_port == b->local_port && a->remote_port == b->remote_port &&
	       a->netns_cookie == b->netns_cookie;
}


static __always_inline int mb_port_in(const __u16 ports[MB_CFG_PORTS], __u16 port)
{
#pragma unroll
	for (int i = 0; i < MB_CFG_PORTS; i++)
		if (ports[i] && ports[i] == port)
			return 1;
	return 0;
}

static __always_inline int mb_is_passthrough(const struct mb_config *c, const __u32 ip[4])
{
	if (mb_ip_is_v4(ip))
		return c->passthrough_v4 && ip[3] == c->passthrough_v4;
	return mb_ip_eq(ip, c->passthrough_v6) && (ip[3] | ip[2] | ip[1] | ip[0]);
}

/*
 * Client side: which server socket will this connection reach? Returns the
 * leg (and fills *claim), MB_LEG_NONE for "not a captured leg: use the direct
 * rule", or -1 for "a captured pod, but the owner is unknown: never guess".
 */
static __always_inline int mb_client_leg(const struct mb_config *c, const struct mb_sock_key *k, __u32 owner,
					 __u64 netns, const struct mb_endpoint_value *le,
					 const struct mb_endpoint_value *re, struct mb_sock_key *claim)
{
	int src_captured = mb_is_local(le) && mb_sidecar_pod(k->local_ip) != 0;
	int dst_captured = mb_is_local(re) && mb_sidecar_pod(k->remote_ip) != 0;
	int to_self = mb_ip_eq(k->local_ip, k->remote_ip);

	/* ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN: the sidecar's inbound
	 * passthrough reaches its own app directly, inside the pod (loopback). */
	if (mb_is_passthrough(c, k->local_ip)) {
		if (!dst_captured || owner != MB_SKS_PROXY)
			return MB_LEG_NONE;
		claim->netns_cookie = netns;
		__builtin_memcpy(claim->local_ip, k->remote_ip, sizeof(claim->local_ip));
		__builtin_memcpy(claim->remote_ip, k->local_ip, sizeof(claim->remote_ip));
		claim->local_port = k->remote_port;
		claim->remote_port = k->local_port;
		return MB_LEG_INBOUND;
	}
	if (src_captured) {
		if (owner == 0)
			return -1;
		if (owner == MB_SKS_APP) {
			/* -o lo ! --uid-owner 1337 -j RETURN and -d 127.0.0.1 -j RETURN:
			 * the pod's own addresses and loopback are not captured. */
			if (to_self || mb_ip_is_loopback(k->remote_ip) || mb_port_in(c->outbound_exclude, k->remote_port))
				return MB_LEG_NONE;
			/* ISTIO_REDIRECT: REDIRECT --to-ports 15001; locally generated
			 * packets go to 127.0.0.1 (::1 for IPv6), inside this pod. */
			claim->local_ip[0] = 0;
			claim->local_ip[1] = 0;
			if (mb_ip_is_v4(k->local_ip)) {
				claim->local_ip[2] = bpf_htonl(0x0000ffff);
				claim->local_ip[3] = bpf_htonl(0x7f000001);
			} else {
				claim->local_ip[2] = 0;
				claim->local_ip[3] = bpf_htonl(1);
			}
			claim->local_port = c->outbound_port;
			__builtin_memcpy(claim->remote_ip, k->local_ip, sizeof(claim->remote_ip));
			claim->remote_port = k->local_port;
			claim->netns_cookie = netns;
			return MB_LEG_OUTBOUND;
		}
		/* --uid-owner 1337 -j RETURN: the proxy's own connections leave
		 * the pod uncaptured (the -o lo variants are not legs). */
		if (to_self)
			return MB_LEG_NONE;
	}
	if (!mb_is_local(le) || !mb_is_local(re) || le->network_id != re->network_id || to_self)
		return MB_LEG_NONE;
	if (dst_captured) {
		/* ISTIO_INBOUND: every port but the excluded ones is REDIRECTed to
		 * 15006 on the destination pod's address (incoming packets keep it). */
		if (mb_port_in(c->inbound_exclude, k->remote_port))
			return MB_LEG_NONE;
		__builtin_memcpy(claim->local_ip, k->remote_ip, sizeof(claim->local_ip));
		claim->local_port = c->inbound_port;
		__builtin_memcpy(claim->remote_ip, k->local_ip, sizeof(claim->remote_ip));
		claim->remote_port = k->local_port;
		claim->netns_cookie = 0;
		return MB_LEG_MESH;
	}
	if (src_captured && owner == MB_SKS_PROXY) {
		/* The sidecar's upstream connection to a local pod without a
		 * sidecar: the flow already went through the sidecar's L7. */
		__builtin_memcpy(claim->local_ip, k->remote_ip, sizeof(claim->local_ip));
		__builtin_memcpy(claim->remote_ip, k->local_ip, sizeof(claim->remote_ip));
		claim->local_port = k->remote_port;
		claim->remote_port = k->local_port;
		claim->netns_cookie = 0;
		return MB_LEG_MESH;
	}
	return MB_LEG_NONE;
}

/*
 * Record a client's claim under its own address (mb_legs). 0 = recorded.
 * Otherwise nothing pairs and it is counted: another live client with this
 * address (NAT may remap the later one's port on the wire) poisons the
 * existing claim, so neither server pairs by guess; or the table is full.
 */
static __always_inline int mb_claim(struct mb_policy_key *me, const struct mb_leg_value *v)
{
	struct mb_leg_value *old;
	int err = bpf_map_update_elem(&mb_legs, me, v, BPF_NOEXIST); /* int: 6.1 hands -EEXIST back zero-extended */

	if (!err)
		return 0;
	if (err == -17 /* -EEXIST */) {
		old = bpf_map_lookup_elem(&mb_legs, me);
		if (old)
			old->flags |= MB_LEG_POISONED; /* only ever set: a lost race still poisons */
		mb_count(MB_STAT_SKIP_SIDECAR_AMBIGUOUS, 1);
	} else {
		mb_count(MB_STAT_SIDECAR_TABLE_FULL, 1);
	}
	return -1;
}

/* Returns 1 when the socket was handled as a sidecar leg (paired or not). */
static __always_inline int mb_sidecar_active(struct bpf_sock_ops *skops, const struct mb_config *c,
					     struct mb_sock_key *key, const struct mb_endpoint_value *le,
					     const struct mb_endpoint_value *re)
{
	struct mb_leg_value v = {};
	struct mb_policy_key me = {}, dst = {};
	struct mb_sk_state *st = 0;
	__u32 owner = 0;
	__u64 netns;
	int leg;

	if (skops->sk)
		st = bpf_sk_storage_get(&mb_sk_state, skops->sk, 0, 0);
	if (st)
		owner = st->flags & (MB_SKS_APP | MB_SKS_PROXY);
	netns = bpf_get_netns_cookie(skops);
	leg = mb_client_leg(c, key, owner, netns, le, re, &v.claim);
	if (leg < 0) {
		mb_count(MB_STAT_SKIP_SIDECAR_OWNER, 1);
		return 1;
	}
	if (leg == MB_LEG_NONE)
		return 0;

	/* The client's own key: the netns cookie when its leg stays in the pod. */
	if (v.claim.netns_cookie)
		key->netns_cookie = netns;
	__builtin_memcpy(&v.client, key, sizeof(v.client));
	v.cookie = bpf_get_socket_cookie(skops);
	v.leg = leg;
	__builtin_memcpy(me.ip, key->local_ip, sizeof(me.ip));
	me.port = key->local_port;
	if (mb_claim(&me, &v))
		return 1;
	/* Remove the claim when this socket closes. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	__builtin_memcpy(dst.ip, v.claim.local_ip, sizeof(dst.ip));
	dst.port = v.claim.local_port;
	if (mb_pair(skops, key, &v.claim, leg, &dst) < 0)
		bpf_map_delete_elem(&mb_legs, &me);
	return 1;
}

/* Server side: pair only if our client claimed exactly this socket (a
 * sidecar leg, or an in-pod flow whose SYN bpf/inpod.c steered). */
static __always_inline int mb_claimed_passive(struct bpf_sock_ops *skops, struct mb_sock_key *key)
{
	struct mb_policy_key client = {}, dst = {};
	struct mb_leg_value *v;
	struct mb_sock_key peer;
	__u32 leg;

	__builtin_memcpy(client.ip, key->remote_ip, sizeof(client.ip));
	client.port = key->remote_port;
	v = bpf_map_lookup_elem(&mb_legs, &client);
	if (!v)
		return 0;
	if (v->flags & MB_LEG_POISONED) {
		mb_count(MB_STAT_SKIP_SIDECAR_AMBIGUOUS, 1);
		return 1;
	}
	/* A claim with a netns cookie is a leg inside one pod: ours must match. */
	if (v->claim.netns_cookie)
		key->netns_cookie = bpf_get_netns_cookie(skops);
	if (!mb_key_eq(&v->claim, key)) {
		key->netns_cookie = 0;
		mb_count(MB_STAT_SKIP_SIDECAR_UNMATCHED, 1);
		return 1;
	}
	__builtin_memcpy(&peer, &v->client, sizeof(peer));
	leg = v->leg;
	__builtin_memcpy(dst.ip, key->local_ip, sizeof(dst.ip));
	dst.port = key->local_port;
	if (leg == MB_LEG_INPOD) {
		struct mb_sk_state *st;

		/* Not steered: the capture took the SYN, we are ztunnel's socket. */
		if (!(v->flags & MB_LEG_STEERED)) {
			mb_count(MB_STAT_SKIP_SIDECAR_UNMATCHED, 1);
			return 1;
		}
		/* The verdict (and exclusions) belong to the port the client asked for. */
		dst.port = peer.remote_port;
		if (mb_pair(skops, key, &peer, leg, &dst) == 0 && skops->sk) {
			st = bpf_sk_storage_get(&mb_sk_state, skops->sk, 0, 0);
			if (st)
				st->flags |= MB_SKS_INPOD_SERVER; /* getsockname answers peer.remote_port */
		}
		return 1;
	}
	mb_pair(skops, key, &peer, leg, &dst);
	return 1;
}

/*
 * In-pod, client side, at TCP_CONNECT_CB (process context, before the SYN):
 * a connection between two enrolled pods that the direct rule would bypass
 * skips ztunnel. Everything the direct rule checks at ESTABLISHED is checked
 * here first, so a flow is exempted only if it would be bypassed.
 */
static __always_inline void mb_inpod_connect(struct bpf_sock_ops *skops)
{
	struct mb_sock_key key = {};
	struct mb_leg_value v = {};
	struct mb_policy_key me = {}, pk = {};
	const struct mb_endpoint_value *le, *re;
	const struct mb_policy_value *pv;
	struct mb_sk_state *st;
	struct bpf_sock *sk = skops->sk;
	int mark;

	if (!sk || MB_FILL_KEY(&key, skops) < 0)
		return;
	if (!mb_inpod_pod(key.local_ip) || !mb_inpod_pod(key.remote_ip))
		return;
	if (mb_ip_is_loopback(key.remote_ip) || mb_ip_eq(key.local_ip, key.remote_ip))
		return;
	/* ztunnel's own sockets carry the mark already; any other mark in those
	 * 12 bits is somebody's rule we do not know: leave both alone. */
	if (sk->mark & MB_INPOD_MASK)
		return;
	if (key.remote_port == bpf_htons(MB_INPOD_HBONE_PORT) || key.remote_port == bpf_htons(MB_INPOD_INBOUND_PORT))
		return;
	le = mb_endpoint(key.local_ip);
	re = mb_endpoint(key.remote_ip);
	if (!mb_is_local(le) || !mb_is_local(re) || le->network_id != re->network_id)
		return;
	__builtin_memcpy(pk.ip, key.remote_ip, sizeof(pk.ip));
	pk.port = key.remote_port;
	pv = bpf_map_lookup_elem(&mb_policy, &pk);
	if (!pv || pv->verdict != MB_VERDICT_BYPASS)
		return;
	if (bpf_map_lookup_elem(&mb_no_bypass, &pk))
		return;

	/* The server socket the client will meet: the inbound REDIRECT rewrote
	 * the port to 15006 before the app's listener accepted it. */
	__builtin_memcpy(&v.client, &key, sizeof(v.client));
	__builtin_memcpy(v.claim.local_ip, key.remote_ip, sizeof(v.claim.local_ip));
	v.claim.local_port = bpf_htons(MB_INPOD_INBOUND_PORT);
	__builtin_memcpy(v.claim.remote_ip, key.local_ip, sizeof(v.claim.remote_ip));
	v.claim.remote_port = key.local_port;
	v.cookie = bpf_get_socket_cookie(skops);
	v.leg = MB_LEG_INPOD;
	v.ts_ns = bpf_ktime_get_ns();
	__builtin_memcpy(me.ip, key.local_ip, sizeof(me.ip));
	me.port = key.local_port;
	if (mb_claim(&me, &v))
		return;
	st = bpf_sk_storage_get(&mb_sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	mark = (int)(sk->mark | MB_INPOD_MARK);
	if (!st || bpf_setsockopt(skops, MB_SOL_SOCKET, MB_SO_MARK, &mark, sizeof(mark))) {
		bpf_map_delete_elem(&mb_legs, &me);
		mb_count(MB_STAT_INSERT_FAILED, 1);
		return;
	}
	st->flags |= MB_SKS_INPOD;
	/* Remove the claim when this socket closes. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	mb_count(MB_STAT_INPOD_MARKED, 1);
}

/* In-pod, server side: record an enrolled pod's listener (netns, port, family). */
static __always_inline void mb_inpod_listen(struct bpf_sock_ops *skops)
{
	struct mb_listener_key k = {};
	__u64 ns = bpf_get_netns_cookie(skops);
	int err;

	if (!bpf_map_lookup_elem(&mb_inpod_ns, &ns))
		return;
	k.netns_cookie = ns;
	k.port = mb_local_port_net(MB_CTX_U32(skops, local_port));
	k.family = (__u16)MB_CTX_U32(skops, family);
	err = bpf_sock_hash_update(skops, &mb_listeners, &k, BPF_NOEXIST);
	if (err == 0)
		mb_count(MB_STAT_INPOD_LISTENERS, 1); /* a second listener on one port/family: the first is kept */
}

/* In-pod, client side, at ESTABLISHED: pair only if the SYN was steered. */
static __always_inline void mb_inpod_active(struct bpf_sock_ops *skops, struct mb_sock_key *key)
{
	struct mb_policy_key me = {}, dst = {};
	struct mb_leg_value *v;

	__builtin_memcpy(me.ip, key->local_ip, sizeof(me.ip));
	me.port = key->local_port;
	v = bpf_map_lookup_elem(&mb_legs, &me);
	if (!v || v->leg != MB_LEG_INPOD || v->cookie != bpf_get_socket_cookie(skops) || (v->flags & MB_LEG_POISONED)) {
		mb_count(MB_STAT_SKIP_SIDECAR_AMBIGUOUS, 1);
		return;
	}
	if (!(v->flags & MB_LEG_STEERED)) {
		/* The server pod's capture took it (no known listener, not enrolled):
		 * the connection runs through ztunnel's inbound port, unpaired. */
		mb_count(MB_STAT_INPOD_NOT_STEERED, 1);
		return;
	}
	__builtin_memcpy(dst.ip, key->remote_ip, sizeof(dst.ip));
	dst.port = key->remote_port;
	mb_pair(skops, key, &v->claim, MB_LEG_INPOD, &dst);
}

static __always_inline void mb_closed(struct bpf_sock_ops *skops)
{
	struct mb_sock_key key = {};
	struct mb_policy_key me = {};
	struct mb_leg_value *v;

	if (MB_FILL_KEY(&key, skops) < 0)
		return;
	__builtin_memcpy(me.ip, key.local_ip, sizeof(me.ip));
	me.port = key.local_port;
	v = bpf_map_lookup_elem(&mb_legs, &me);
	if (v && v->cookie == bpf_get_socket_cookie(skops))
		bpf_map_delete_elem(&mb_legs, &me);
}
#endif /* MB_NO_NETNS_COOKIE */

#ifndef MB_NO_NETNS_COOKIE
/* Remember this namespace's local pod address (per family) for the connect
 * hook, which cannot know the client's address yet (bpf/connect.c). */
static __always_inline void mb_learn_netns(struct bpf_sock_ops *skops, const __u32 ip[4])
{
	struct mb_netns_value fresh = {};
	struct mb_netns_value *v;
	__u64 ns = bpf_get_netns_cookie(skops);
	int v4 = ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0x0000ffff);

	v = bpf_map_lookup_elem(&mb_netns, &ns);
	if (v) {
		__u32 *slot = v4 ? v->ip4 : v->ip6;

		if (slot[0] != ip[0] || slot[1] != ip[1] || slot[2] != ip[2] || slot[3] != ip[3])
			__builtin_memcpy(slot, ip, 16);
		return;
	}
	__builtin_memcpy(v4 ? fresh.ip4 : fresh.ip6, ip, 16);
	bpf_map_update_elem(&mb_netns, &ns, &fresh, BPF_NOEXIST); /* lost a race: the next socket learns */
}
#endif

static __always_inline void mb_established(struct bpf_sock_ops *skops, int active)
{
	struct mb_sock_key key = {};
	const struct mb_endpoint_value *le, *re;

	mb_count(MB_STAT_SOCKOPS_ESTABLISHED, 1);
	if (MB_FILL_KEY(&key, skops) < 0) {
		mb_count(MB_STAT_SKIP_FAMILY, 1);
		return;
	}
	le = mb_endpoint(key.local_ip);
	re = mb_endpoint(key.remote_ip);
#ifndef MB_NO_NETNS_COOKIE
	if (mb_is_local(le) && !mb_ip_is_loopback(key.local_ip))
		mb_learn_netns(skops, key.local_ip);
#endif

#ifndef MB_NO_NETNS_COOKIE
	if (active) {
		const struct mb_sk_state *st = skops->sk ? bpf_sk_storage_get(&mb_sk_state, skops->sk, 0, 0) : 0;

		if (st && (st->flags & MB_SKS_INPOD)) {
			mb_inpod_active(skops, &key);
			return;
		}
	} else if (mb_claimed_passive(skops, &key)) {
		return; /* a claimed server socket: a sidecar leg or an in-pod flow */
	}
	if (active) {
		const struct mb_config *c = mb_cfg();

		if (c && (c->flags & MB_CFG_SIDECAR) && mb_sidecar_active(skops, c, &key, le, re))
			return;
	}
#endif
	mb_direct(skops, &key, active, le, re);
}

SEC("sockops")
int mb_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		mb_established(skops, 1);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		mb_established(skops, 0);
		break;
#ifndef MB_NO_NETNS_COOKIE
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		mb_inpod_connect(skops);
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		mb_inpod_listen(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == BPF_TCP_CLOSE)
			mb_closed(skops);
		break;
#endif
	}
	return 1; /* sockops: 1 = continue; never affects the connection */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
