// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * sk_lookup, attached to an enrolled pod's network namespace (Istio ambient,
 * in-pod capture): the server half of skipping ztunnel for a bypassed flow.
 *
 * istio-cni's nat PREROUTING rule REDIRECTs every inbound TCP SYN to ztunnel
 * on 15006 unless the packet carries mark 0x539. That mark cannot be given
 * here: the mangle rule before it turns the same mark into connmark 0x111,
 * and the pod's `ip rule fwmark 0x111/0xfff lookup 100` then routes every
 * reply to lo (where ztunnel, not the client, would be). A tc program that
 * assigns the SYN to a socket (bpf_sk_assign) does not survive the REDIRECT
 * either on newer kernels (6.18 drops the prefetched socket when NAT rewrites
 * the destination; 6.1 keeps it). So the packet is left alone and the choice
 * is made where the kernel picks the listener, after the REDIRECT: for a SYN
 * to pod:15006 whose client claimed it (sockops, TCP_CONNECT_CB: a flow
 * between two enrolled pods that meshbpf bypasses, its client marked 0x539),
 * this program selects the app's own listener for the port the client asked
 * for (mb_listeners, recorded by sockops at LISTEN). The accepted socket is
 * bound to pod:15006 (getsockname answers the real port, bpf/connect.c);
 * conntrack un-NATs the replies as usual. The claim is marked STEERED;
 * sockops pairs the two sockets only then.
 *
 * Every other lookup, and every SYN without a fresh, unpoisoned claim naming
 * exactly this socket, or with no recorded listener on that port, is left to
 * the kernel: the capture takes it as before. Without this program (not
 * attached, meshbpf unloaded) nothing is steered. Always returns SK_PASS.
 */
#include "include/maps.h"
#include "include/ctx.h"

#define MB_IPPROTO_TCP 6

SEC("sk_lookup")
int mb_inpod_lookup(struct bpf_sk_lookup *ctx)
{
	struct mb_policy_key client = {};
	struct mb_listener_key lk = {};
	__u32 local[4];
	const __u64 *ns;
	struct mb_leg_value *v;
	struct bpf_sock *sk;
	long err;

	__u32 family = MB_CTX_U32(ctx, family);
	__u16 local_port = (__u16)MB_CTX_U32(ctx, local_port); /* host order */

	if (MB_CTX_U32(ctx, protocol) != MB_IPPROTO_TCP)
		return SK_PASS;
	if (family == MB_AF_INET) {
		mb_ip_from_v4(client.ip, MB_CTX_U32(ctx, remote_ip4));
		mb_ip_from_v4(local, MB_CTX_U32(ctx, local_ip4));
	} else if (family == MB_AF_INET6) {
		client.ip[0] = MB_CTX_U32(ctx, remote_ip6[0]);
		client.ip[1] = MB_CTX_U32(ctx, remote_ip6[1]);
		client.ip[2] = MB_CTX_U32(ctx, remote_ip6[2]);
		client.ip[3] = MB_CTX_U32(ctx, remote_ip6[3]);
		local[0] = MB_CTX_U32(ctx, local_ip6[0]);
		local[1] = MB_CTX_U32(ctx, local_ip6[1]);
		local[2] = MB_CTX_U32(ctx, local_ip6[2]);
		local[3] = MB_CTX_U32(ctx, local_ip6[3]);
	} else {
		return SK_PASS;
	}
	/* __be16 in the low half (the 4-byte load the kernel keeps for compatibility) */
	client.port = (__u16)MB_CTX_U32(ctx, remote_port);
	v = bpf_map_lookup_elem(&mb_legs, &client);
	if (!v || v->leg != MB_LEG_INPOD)
		return SK_PASS;
	/* exactly the socket the client expects: pod:15006 */
	if (v->claim.local_port != bpf_htons(local_port) || !mb_ip_eq(v->claim.local_ip, local))
		goto no;
	if (v->flags & MB_LEG_POISONED)
		goto no;
	if (bpf_ktime_get_ns() - v->ts_ns > MB_INPOD_SYN_NS)
		goto no; /* a claim that outlived its SYN (its socket's close was never seen) */
	ns = mb_inpod_pod(local);
	if (!ns)
		goto no;
	lk.netns_cookie = *ns;
	lk.port = v->client.remote_port;
	lk.family = (__u16)family;
	sk = bpf_map_lookup_elem(&mb_listeners, &lk);
	if (!sk && family == MB_AF_INET) {
		lk.family = MB_AF_INET6; /* a dual-stack [::] listener (the kernel refuses a v6only one) */
		sk = bpf_map_lookup_elem(&mb_listeners, &lk);
	}
	if (!sk)
		goto no;
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err)
		goto no;
	v->flags |= MB_LEG_STEERED;
	mb_count(MB_STAT_INPOD_STEERED, 1);
	return SK_PASS;
no:
	mb_count(MB_STAT_INPOD_NOT_STEERED, 1);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
