/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Building mb_sock_key from each program context. The kernel exposes ports
 * differently from one field to the next; every quirk is handled here, once,
 * and the kernel tests prove the two sides build mirror-image keys.
 */
#ifndef MESHBPF_CTX_H
#define MESHBPF_CTX_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "meshbpf.h"

/*
 * Kernel quirk (bpf_sock_ops and sk_msg_md alike):
 *  - local_port is the socket's port in HOST byte order (from inet_num);
 *  - remote_port is skc_dport, a NETWORK order u16, loaded into a u32 and
 *    shifted left by 16 on little-endian hosts (so bpf_ntohl(remote_port)
 *    gives host order and the upper 16 bits hold the network-order u16).
 * Keys carry both ports in network order.
 */
static __always_inline __u16 mb_local_port_net(__u32 local_port_host)
{
	return bpf_htons((__u16)local_port_host);
}

static __always_inline __u16 mb_remote_port_net(__u32 remote_port_field)
{
	/* bpf_ntohl undoes the shift-by-16 on LE and is a no-op on BE, where the
	 * kernel leaves the u16 in the low half; then back to network order. */
	return bpf_htons((__u16)bpf_ntohl(remote_port_field));
}

/* ::ffff:a.b.c.d from an AF_INET address (network order u32). */
static __always_inline void mb_ip_from_v4(__u32 ip[4], __u32 v4)
{
	ip[0] = 0;
	ip[1] = 0;
	ip[2] = bpf_htonl(0x0000ffff);
	ip[3] = v4;
}

/* ::ffff:a.b.c.d: an IPv4 address, as keys store it. */
static __always_inline int mb_ip_eq(const __u32 a[4], const __u32 b[4])
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline int mb_ip_is_v4(const __u32 ip[4])
{
	return ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0x0000ffff);
}

/* 127.0.0.0/8 (v4 or v4-mapped) or ::1. Loopback connections never leave one
 * network namespace, and every namespace has its own 127.0.0.1, so their keys
 * must carry the netns cookie. */
static __always_inline int mb_ip_is_loopback(const __u32 ip[4])
{
	if (ip[0] != 0 || ip[1] != 0)
		return 0;
	if (ip[2] == bpf_htonl(0x0000ffff))
		return (ip[3] & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000);
	return ip[2] == 0 && ip[3] == bpf_htonl(1);
}

/*
 * Fill the socket's own key from any context with the usual socket fields
 * (struct bpf_sock_ops or struct sk_msg_md). Returns 0, or -1 for a family
 * meshbpf does not handle.
 *
 * Verifier workaround: ctx fields are read with MB_CTX_U32, an inline-asm
 * 4-byte load at a constant offset from the ctx pointer. Plain C loads let
 * clang compute "ctx + offset" into a register ahead of time and load through
 * it later; the verifier refuses that ("dereference of modified ctx ptr").
 */
#define MB_CTX_U32(ctx, field)                                                 \
	({                                                                     \
		__u32 __v;                                                     \
		asm volatile("%[v] = *(u32 *)(%[c] + %[o])"                    \
			     : [v] "=r"(__v)                                   \
			     : [c] "r"(ctx),                                   \
			       [o] "i"(__builtin_offsetof(typeof(*(ctx)), field))); \
		__v;                                                           \
	})

#define MB_FILL_KEY(key, ctx)                                                  \
	({                                                                     \
		__u32 __l6[4], __r6[4];                                        \
		__u32 __fam = MB_CTX_U32(ctx, family);                         \
		__u32 __l4 = MB_CTX_U32(ctx, local_ip4);                       \
		__u32 __r4 = MB_CTX_U32(ctx, remote_ip4);                      \
		__l6[0] = MB_CTX_U32(ctx, local_ip6[0]);                       \
		__l6[1] = MB_CTX_U32(ctx, local_ip6[1]);                       \
		__l6[2] = MB_CTX_U32(ctx, local_ip6[2]);                       \
		__l6[3] = MB_CTX_U32(ctx, local_ip6[3]);                       \
		__r6[0] = MB_CTX_U32(ctx, remote_ip6[0]);                      \
		__r6[1] = MB_CTX_U32(ctx, remote_ip6[1]);                      \
		__r6[2] = MB_CTX_U32(ctx, remote_ip6[2]);                      \
		__r6[3] = MB_CTX_U32(ctx, remote_ip6[3]);                      \
		(key)->local_port = mb_local_port_net(MB_CTX_U32(ctx, local_port)); \
		(key)->remote_port = mb_remote_port_net(MB_CTX_U32(ctx, remote_port)); \
		mb_fill_ips(key, __fam, __l4, __r4, __l6, __r6);               \
	})

static __always_inline int mb_fill_ips(struct mb_sock_key *key, __u32 family, __u32 l4, __u32 r4,
				       const __u32 l6[4], const __u32 r6[4])
{
	if (family == MB_AF_INET) {
		mb_ip_from_v4(key->local_ip, l4);
		mb_ip_from_v4(key->remote_ip, r4);
		return 0;
	}
	if (family == MB_AF_INET6) {
		/* v4-mapped AF_INET6 sockets already hold ::ffff:a.b.c.d */
		key->local_ip[0] = l6[0];
		key->local_ip[1] = l6[1];
		key->local_ip[2] = l6[2];
		key->local_ip[3] = l6[3];
		key->remote_ip[0] = r6[0];
		key->remote_ip[1] = r6[1];
		key->remote_ip[2] = r6[2];
		key->remote_ip[3] = r6[3];
		return 0;
	}
	return -1;
}

#endif
