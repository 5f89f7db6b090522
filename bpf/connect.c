// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * cgroup/connect4 and connect6, two jobs:
 *
 * 1. Mark who connects (sidecar pairing). istio-iptables exempts the proxy by
 *    owner (--uid-owner / --gid-owner 1337); sockops runs in softirq context at
 *    ESTABLISHED and cannot see the owner, so the owner is recorded here, in
 *    process context, in the socket's storage. Only with sidecar pairing on
 *    (mb_config). A socket without a mark (connected before this program was
 *    attached) is "owner unknown", and sockops never treats it as a captured leg.
 *
 * 2. Resolve a service VIP at connect (Cilium's socket LB, Kmesh): a TCP
 *    connect to a VIP:port in mb_services goes straight to one of its local
 *    backends (ip:targetPort), so both sockets name each other and sockops can
 *    pair them. Only when every one of these holds, else the connect is left
 *    alone and kube-proxy (or the mesh) does its normal job:
 *      - the compiler's verdict for VIP:port is BYPASS (MB_SVC_BYPASS), and the
 *        chosen backend's own mb_policy verdict is BYPASS;
 *      - the service has a local backend (count > 0);
 *      - the client's pod is known and has no sidecar. The client's own address
 *        is unknown at connect (not bound yet), so it is taken from its network
 *        namespace: sockops records, per netns cookie, the local pod addresses
 *        it saw there (mb_netns). A namespace with no socket seen yet is not
 *        translated (its first connect goes through kube-proxy). A namespace is
 *        captured when any of its addresses is in mb_sidecar or a proxy uid/gid
 *        (Istio's 1337 unless mb_config says otherwise) ever connected from it:
 *        its sidecar must see the VIP as the original destination;
 *      - client and backend are LOCAL in mb_endpoints, on one network.
 *    The choice among several local backends is uniform (prandom % count).
 *    The VIP is kept in the socket's storage (mb_sk_vip) and getpeername4/6
 *    answer with it while the peer is still that backend.
 *
 * The connect is always allowed (return 1).
 *
 * Also here: getpeername4/6 (the VIP of a translated socket) and
 * getsockname4/6 (the real port of an in-pod server socket, bpf/inpod.c).
 */
#include "include/maps.h"
#include "include/ctx.h"

#define MB_SOCK_STREAM 1
#define MB_ISTIO_PROXY_ID 1337

static __always_inline void mb_mark_owner(struct bpf_sock_addr *ctx, const struct mb_config *c, __u64 ug)
{
	struct bpf_sock *sk = ctx->sk;
	struct mb_sk_state *st;
	__u32 uid = (__u32)ug, gid = (__u32)(ug >> 32);

	if (!c || !(c->flags & MB_CFG_SIDECAR) || !sk)
		return;
	st = bpf_sk_storage_get(&mb_sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return;
	st->flags &= ~(MB_SKS_APP | MB_SKS_PROXY);
	st->flags |= (uid == c->proxy_uid || gid == c->proxy_gid) ? MB_SKS_PROXY : MB_SKS_APP;
}

#ifndef MB_NO_VIP

static __always_inline int mb_vip_captured_ip(const __u32 ip[4])
{
	if (!(ip[0] | ip[1] | ip[2] | ip[3]))
		return 0;
	return mb_sidecar_pod(ip) != 0;
}

/* A proxy uid/gid connecting from a namespace marks it captured, for good. */
static __always_inline void mb_vip_mark_proxy_ns(const struct mb_config *c, __u64 ug, __u64 ns)
{
	__u32 uid = (__u32)ug, gid = (__u32)(ug >> 32);
	__u32 puid = MB_ISTIO_PROXY_ID, pgid = MB_ISTIO_PROXY_ID;
	struct mb_netns_value fresh = { .flags = MB_NS_PROXY };
	struct mb_netns_value *v;

	if (c && (c->flags & MB_CFG_SIDECAR)) {
		puid = c->proxy_uid;
		pgid = c->proxy_gid;
	}
	if (uid != puid && gid != pgid)
		return;
	v = bpf_map_lookup_elem(&mb_netns, &ns);
	/* Plain |=: sockops writes only the address slots, never flags, and a
	 * racing proxy connect sets the same bit (32-bit fetch_or needs -mcpu=v3). */
	if (v) {
		v->flags |= MB_NS_PROXY;
		return;
	}
	if (bpf_map_update_elem(&mb_netns, &ns, &fresh, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(&mb_netns, &ns); /* lost a race with sockops */
		if (v)
			v->flags |= MB_NS_PROXY;
	}
}

/*
 * The rule described at the top. Returns 0 and fills *out with the backend to
 * connect to, or -1 (counted by reason) to leave the connect alone.
 */
static __always_inline int mb_vip_pick(struct bpf_sock_addr *ctx, const struct mb_policy_key *vip, __u64 ns,
				       struct mb_backend_value *out)
{
	const struct mb_service_value *sv;
	const struct mb_backend_value *bv;
	const struct mb_netns_value *nv;
	const struct mb_endpoint_value *se, *de;
	const struct mb_policy_value *pv;
	struct mb_backend_key bk = {};
	struct mb_policy_key pk = {};
	__u32 src[4];
	__u32 count;

	sv = bpf_map_lookup_elem(&mb_services, vip);
	if (!sv)
		return -1; /* not a service VIP: not counted (every other connect lands here) */
	if (!(sv->flags & MB_SVC_BYPASS)) {
		mb_count(MB_STAT_VIP_SKIP_PROXY, 1);
		return -1;
	}
	/* One read of id and count: the slot is chosen from what we read. */
	bk.service_id = sv->id;
	count = sv->count;
	if (count == 0) {
		mb_count(MB_STAT_VIP_NO_BACKEND, 1);
		return -1;
	}
	nv = bpf_map_lookup_elem(&mb_netns, &ns);
	if (!nv) {
		mb_count(MB_STAT_VIP_SKIP_SOURCE, 1);
		return -1;
	}
	if ((nv->flags & MB_NS_PROXY) || mb_vip_captured_ip(nv->ip4) || mb_vip_captured_ip(nv->ip6)) {
		mb_count(MB_STAT_VIP_SKIP_CAPTURED, 1);
		return -1;
	}
	if (mb_ip_is_v4(vip->ip))
		__builtin_memcpy(src, nv->ip4, sizeof(src));
	else
		__builtin_memcpy(src, nv->ip6, sizeof(src));
	if (!(src[0] | src[1] | src[2] | src[3])) {
		mb_count(MB_STAT_VIP_SKIP_SOURCE, 1); /* no address of this family seen yet */
		return -1;
	}
	se = mb_endpoint(src);
	if (!se || !(se->flags & MB_EP_LOCAL)) {
		mb_count(MB_STAT_VIP_SKIP_NETWORK, 1);
		return -1;
	}

	bk.slot = bpf_get_prandom_u32() % count;
	bv = bpf_map_lookup_elem(&mb_backends, &bk);
	if (!bv) {
		/* Only if the sync broke its order (or a count read raced a shrink
		 * past a delete): never guess, kube-proxy still knows the way. */
		mb_count(MB_STAT_VIP_NO_BACKEND, 1);
		return -1;
	}
	__builtin_memcpy(out, bv, sizeof(*out));
	if (!out->port || mb_ip_is_v4(out->ip) != mb_ip_is_v4(vip->ip)) {
		mb_count(MB_STAT_VIP_NO_BACKEND, 1);
		return -1;
	}
	de = mb_endpoint(out->ip);
	if (!de || !(de->flags & MB_EP_LOCAL) || de->network_id != se->network_id) {
		mb_count(MB_STAT_VIP_SKIP_NETWORK, 1);
		return -1;
	}
	__builtin_memcpy(pk.ip, out->ip, sizeof(pk.ip));
	pk.port = out->port;
	pv = bpf_map_lookup_elem(&mb_policy, &pk);
	if (!pv || pv->verdict != MB_VERDICT_BYPASS) {
		mb_count(MB_STAT_VIP_SKIP_PROXY, 1);
		return -1;
	}
	return 0;
}

/* Resolve, remember the VIP for getpeername, count. 0 = rewrite to *out. */
static __always_inline int mb_vip_connect(struct bpf_sock_addr *ctx, const struct mb_config *c, __u64 ug,
					  const struct mb_policy_key *vip, struct mb_backend_value *out)
{
	struct bpf_sock *sk = ctx->sk;
	struct mb_sk_vip *st;
	__u64 ns;

	if (!sk)
		return -1;
	ns = bpf_get_netns_cookie(ctx);
	mb_vip_mark_proxy_ns(c, ug, ns);
	/* A socket connecting again (after AF_UNSPEC) must not keep an old VIP. */
	st = bpf_sk_storage_get(&mb_sk_vip, sk, 0, 0);
	if (st)
		__builtin_memset(st, 0, sizeof(*st));
	if (mb_vip_pick(ctx, vip, ns, out) < 0)
		return -1;
	st = bpf_sk_storage_get(&mb_sk_vip, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		/* Without the VIP kept, getpeername would show the backend: no rewrite. */
		mb_count(MB_STAT_VIP_NO_BACKEND, 1);
		return -1;
	}
	__builtin_memcpy(st->vip, vip->ip, sizeof(st->vip));
	__builtin_memcpy(st->backend, out->ip, sizeof(st->backend));
	st->vip_port = vip->port;
	st->backend_port = out->port;
	mb_count(MB_STAT_VIP_TRANSLATED, 1);
	return 0;
}
#endif /* MB_NO_VIP */

/* Both families: mark the owner, then resolve the VIP. 0 = rewrite to *be. */
static __always_inline int mb_connect(struct bpf_sock_addr *ctx, const struct mb_policy_key *vip, struct mb_backend_value *be)
{
	const struct mb_config *c = mb_cfg();
	__u64 ug = bpf_get_current_uid_gid();

	mb_mark_owner(ctx, c, ug);
#ifndef MB_NO_VIP
	return mb_vip_connect(ctx, c, ug, vip, be);
#else
	return -1;
#endif
}

SEC("cgroup/connect4")
int mb_connect4(struct bpf_sock_addr *ctx)
{
	struct mb_policy_key vip = {};
	struct mb_backend_value be = {};

	if (ctx->type != MB_SOCK_STREAM)
		return 1;
	mb_ip_from_v4(vip.ip, MB_CTX_U32(ctx, user_ip4));
	vip.port = (__u16)MB_CTX_U32(ctx, user_port); /* network order in the low half */
	if (mb_connect(ctx, &vip, &be) == 0) {
		ctx->user_ip4 = be.ip[3];
		ctx->user_port = be.port;
	}
	return 1;
}

SEC("cgroup/connect6")
int mb_connect6(struct bpf_sock_addr *ctx)
{
	struct mb_policy_key vip = {};
	struct mb_backend_value be = {};

	if (ctx->type != MB_SOCK_STREAM)
		return 1;
	/* ::ffff:a.b.c.d on a dual-stack socket is the IPv4 VIP, as stored. */
	vip.ip[0] = MB_CTX_U32(ctx, user_ip6[0]);
	vip.ip[1] = MB_CTX_U32(ctx, user_ip6[1]);
	vip.ip[2] = MB_CTX_U32(ctx, user_ip6[2]);
	vip.ip[3] = MB_CTX_U32(ctx, user_ip6[3]);
	vip.port = (__u16)MB_CTX_U32(ctx, user_port);
	if (mb_connect(ctx, &vip, &be) == 0) {
		ctx->user_ip6[0] = be.ip[0];
		ctx->user_ip6[1] = be.ip[1];
		ctx->user_ip6[2] = be.ip[2];
		ctx->user_ip6[3] = be.ip[3];
		ctx->user_port = be.port;
	}
	return 1;
}

#ifndef MB_NO_VIP
/* getpeername: the VIP, as long as the peer is the backend we chose. */
static __always_inline struct mb_sk_vip *mb_vip_of(struct bpf_sock_addr *ctx, const __u32 peer[4], __u16 port)
{
	struct mb_sk_vip *st;

	if (!ctx->sk)
		return 0;
	st = bpf_sk_storage_get(&mb_sk_vip, ctx->sk, 0, 0);
	if (!st || !st->vip_port || st->backend_port != port)
		return 0;
	if (st->backend[0] != peer[0] || st->backend[1] != peer[1] || st->backend[2] != peer[2] || st->backend[3] != peer[3])
		return 0;
	return st;
}

SEC("cgroup/getpeername4")
int mb_getpeername4(struct bpf_sock_addr *ctx)
{
	struct mb_sk_vip *st;
	__u32 peer[4];

	mb_ip_from_v4(peer, MB_CTX_U32(ctx, user_ip4));
	st = mb_vip_of(ctx, peer, (__u16)MB_CTX_U32(ctx, user_port));
	if (st) {
		ctx->user_ip4 = st->vip[3];
		ctx->user_port = st->vip_port;
		mb_count(MB_STAT_VIP_PEERNAME, 1);
	}
	return 1;
}

SEC("cgroup/getpeername6")
int mb_getpeername6(struct bpf_sock_addr *ctx)
{
	struct mb_sk_vip *st;
	__u32 peer[4];

	peer[0] = MB_CTX_U32(ctx, user_ip6[0]);
	peer[1] = MB_CTX_U32(ctx, user_ip6[1]);
	peer[2] = MB_CTX_U32(ctx, user_ip6[2]);
	peer[3] = MB_CTX_U32(ctx, user_ip6[3]);
	st = mb_vip_of(ctx, peer, (__u16)MB_CTX_U32(ctx, user_port));
	if (st) {
		ctx->user_ip6[0] = st->vip[0];
		ctx->user_ip6[1] = st->vip[1];
		ctx->user_ip6[2] = st->vip[2];
		ctx->user_ip6[3] = st->vip[3];
		ctx->user_port = st->vip_port;
		mb_count(MB_STAT_VIP_PEERNAME, 1);
	}
	return 1;
}

/* getsockname on an in-pod server socket (bpf/inpod.c): the inbound REDIRECT
 * bound it to 15006; the app is told the port its client asked for. */
static __always_inline __u16 mb_inpod_sockname(struct bpf_sock_addr *ctx)
{
	struct mb_sk_state *st;

	if (!ctx->sk || (__u16)MB_CTX_U32(ctx, user_port) != bpf_htons(MB_INPOD_INBOUND_PORT))
		return 0;
	st = bpf_sk_storage_get(&mb_sk_state, ctx->sk, 0, 0);
	if (!st || !(st->flags & MB_SKS_INPOD_SERVER))
		return 0;
	mb_count(MB_STAT_INPOD_GETSOCKNAME, 1);
	return st->peer.remote_port;
}

SEC("cgroup/getsockname4")
int mb_getsockname4(struct bpf_sock_addr *ctx)
{
	__u16 port = mb_inpod_sockname(ctx);

	if (port)
		ctx->user_port = port;
	return 1;
}

SEC("cgroup/getsockname6")
int mb_getsockname6(struct bpf_sock_addr *ctx)
{
	__u16 port = mb_inpod_sockname(ctx);

	if (port)
		ctx->user_port = port;
	return 1;
}
#endif /* MB_NO_VIP */

char LICENSE[] SEC("license") = "Dual BSD/GPL";
