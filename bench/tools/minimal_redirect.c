// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The bench's "minimal redirect": the design older projects use, as a yardstick
 * for meshbpf's own per-message cost. sockops inserts EVERY established socket
 * of its cgroup into its own sockhash (no policy, no endpoints, no socket
 * storage, no counters); sk_msg builds the mirror of the socket's key from the
 * message context and redirects into the peer (BPF_F_INGRESS). IPv4 keys are 16
 * bytes (addresses and the raw port fields); IPv6 keys 40. A dual-stack socket
 * talking IPv4 uses the IPv4 key, so it pairs with an AF_INET peer.
 *
 * Not part of the product: bench/run.ts loads it into a sibling cgroup of the
 * node's (bench/lib/minimal.ts) with its own iperf3 server.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../../bpf/include/ctx.h"

/* Ports exactly as the contexts give them: local_port host order, remote_port
 * the kernel's shifted network-order field. The mirror converts. */
struct min_key4 {
	__u32 local_ip;
	__u32 remote_ip;
	__u32 local_port;
	__u32 remote_port;
};

struct min_key6 {
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u32 local_port;
	__u32 remote_port;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 1024);
	__type(key, struct min_key4);
	__type(value, __u64);
} min_socks4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 1024);
	__type(key, struct min_key6);
	__type(value, __u64);
} min_socks6 SEC(".maps");

#define V4MAPPED(a0, a1, a2) ((a0) == 0 && (a1) == 0 && (a2) == bpf_htonl(0x0000ffff))

SEC("sockops")
int min_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = MB_CTX_U32(skops, op);

	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	__u32 family = MB_CTX_U32(skops, family);
	__u32 lp = MB_CTX_U32(skops, local_port), rp = MB_CTX_U32(skops, remote_port);
	if (family == 2) {
		struct min_key4 k = { MB_CTX_U32(skops, local_ip4), MB_CTX_U32(skops, remote_ip4), lp, rp };
		bpf_sock_hash_update(skops, &min_socks4, &k, BPF_NOEXIST);
	} else if (family == 10) {
		struct min_key6 k = {};
		k.local_ip[0] = MB_CTX_U32(skops, local_ip6[0]);
		k.local_ip[1] = MB_CTX_U32(skops, local_ip6[1]);
		k.local_ip[2] = MB_CTX_U32(skops, local_ip6[2]);
		k.local_ip[3] = MB_CTX_U32(skops, local_ip6[3]);
		k.remote_ip[0] = MB_CTX_U32(skops, remote_ip6[0]);
		k.remote_ip[1] = MB_CTX_U32(skops, remote_ip6[1]);
		k.remote_ip[2] = MB_CTX_U32(skops, remote_ip6[2]);
		k.remote_ip[3] = MB_CTX_U32(skops, remote_ip6[3]);
		if (V4MAPPED(k.local_ip[0], k.local_ip[1], k.local_ip[2])) {
			struct min_key4 k4 = { k.local_ip[3], k.remote_ip[3], lp, rp };
			bpf_sock_hash_update(skops, &min_socks4, &k4, BPF_NOEXIST);
			return 1;
		}
		k.local_port = lp;
		k.remote_port = rp;
		bpf_sock_hash_update(skops, &min_socks6, &k, BPF_NOEXIST);
	}
	return 1;
}

SEC("sk_msg")
int min_sk_msg(struct sk_msg_md *msg)
{
	__u32 family = MB_CTX_U32(msg, family);
	/* the peer's local port is our remote one in host order, and back */
	__u32 plp = bpf_ntohl(MB_CTX_U32(msg, remote_port));
	__u32 prp = bpf_htonl(MB_CTX_U32(msg, local_port));

	if (family == 2) {
		struct min_key4 p = { MB_CTX_U32(msg, remote_ip4), MB_CTX_U32(msg, local_ip4), plp, prp };
		bpf_msg_redirect_hash(msg, &min_socks4, &p, BPF_F_INGRESS);
		return SK_PASS;
	}
	if (family == 10) {
		struct min_key6 p = {};
		p.local_ip[0] = MB_CTX_U32(msg, remote_ip6[0]);
		p.local_ip[1] = MB_CTX_U32(msg, remote_ip6[1]);
		p.local_ip[2] = MB_CTX_U32(msg, remote_ip6[2]);
		p.local_ip[3] = MB_CTX_U32(msg, remote_ip6[3]);
		p.remote_ip[0] = MB_CTX_U32(msg, local_ip6[0]);
		p.remote_ip[1] = MB_CTX_U32(msg, local_ip6[1]);
		p.remote_ip[2] = MB_CTX_U32(msg, local_ip6[2]);
		p.remote_ip[3] = MB_CTX_U32(msg, local_ip6[3]);
		if (V4MAPPED(p.local_ip[0], p.local_ip[1], p.local_ip[2])) {
			struct min_key4 p4 = { p.local_ip[3], p.remote_ip[3], plp, prp };
			bpf_msg_redirect_hash(msg, &min_socks4, &p4, BPF_F_INGRESS);
			return SK_PASS;
		}
		p.local_port = plp;
		p.remote_port = prp;
		bpf_msg_redirect_hash(msg, &min_socks6, &p, BPF_F_INGRESS);
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Measurement variants (bench --variants): the same sockets in the sockhash
 * (a psock, tcp_bpf_sendmsg on every send), but the verdict is SK_PASS: what
 * does the stack cost through tcp_bpf_sendmsg, per message (min_pass) and
 * with the verdict cached for the next 1 GiB (min_pass_apply)? */
SEC("sk_msg")
int min_pass(struct sk_msg_md *msg)
{
	return SK_PASS;
}

SEC("sk_msg")
int min_pass_apply(struct sk_msg_md *msg)
{
	bpf_msg_apply_bytes(msg, 1u << 30);
	return SK_PASS;
}
