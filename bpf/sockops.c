// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * sockops: on every ESTABLISHED TCP socket in the attached cgroup, decide if
 * the connection may be short-circuited and, if so, put the socket into
 * mb_sockets (where sk_msg finds it). Every outcome is counted by reason.
 *
 * Eligible: both ends are LOCAL addresses of the same network in mb_endpoints,
 * and mb_policy says BYPASS for the server side. Anything else: normal path.
 */
#include "include/maps.h"
#include "include/ctx.h"
#include "include/splice.h"

static __always_inline const struct mb_endpoint_value *mb_endpoint(const __u32 ip[4])
{
	struct mb_endpoint_key k = { .prefixlen = 128 };

	k.ip[0] = ip[0];
	k.ip[1] = ip[1];
	k.ip[2] = ip[2];
	k.ip[3] = ip[3];
	return bpf_map_lookup_elem(&mb_endpoints, &k);
}

static __always_inline void mb_established(struct bpf_sock_ops *skops, int active)
{
	struct mb_sock_key key = {};
	struct mb_policy_key pk = {};
	const struct mb_endpoint_value *le, *re;
	const struct mb_policy_value *pv;
	long err;

	mb_count(MB_STAT_SOCKOPS_ESTABLISHED, 1);
	if (MB_FILL_KEY(&key, skops) < 0) {
		mb_count(MB_STAT_SKIP_FAMILY, 1);
		return;
	}

	le = mb_endpoint(key.local_ip);
	if (!le || !(le->flags & MB_EP_LOCAL)) {
		mb_count(MB_STAT_SKIP_LOCAL_UNKNOWN, 1);
		return;
	}
	re = mb_endpoint(key.remote_ip);
	if (!re || !(re->flags & MB_EP_LOCAL)) {
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
		__builtin_memcpy(pk.ip, key.remote_ip, sizeof(pk.ip));
		pk.port = key.remote_port;
	} else {
		__builtin_memcpy(pk.ip, key.local_ip, sizeof(pk.ip));
		pk.port = key.local_port;
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

	if (mb_ip_is_loopback(key.remote_ip)) {
#ifdef MB_NO_NETNS_COOKIE
		/* Kernels without bpf_get_netns_cookie here (< 5.15) cannot tell
		 * two namespaces' 127.0.0.1 apart: never accelerate loopback. */
		mb_count(MB_STAT_SKIP_LOOPBACK, 1);
		return;
#else
		key.netns_cookie = bpf_get_netns_cookie(skops);
#endif
	}

	/* splice guard (include/splice.h): excluded destinations stay on the stack */
	if (mb_splice_guard(skops, &pk))
		return;

	/* BPF_NOEXIST: never displace another live socket with the same key. */
	err = bpf_sock_hash_update(skops, &mb_sockets, &key, BPF_NOEXIST);
	if (err == 0)
		mb_count(MB_STAT_INSERTED, 1);
	else if (err == -7 /* -E2BIG: map full */ || err == -12 /* -ENOMEM */)
		mb_count(MB_STAT_MAP_FULL, 1);
	else
		mb_count(MB_STAT_INSERT_FAILED, 1);
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
	}
	return 1; /* sockops: 1 = continue; never affects the connection */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
