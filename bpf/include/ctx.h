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
 * meshbpf does not handle. The 4-byte ctx loads of local_ip6[i] are what the
 * verifier allows for these arrays.
 */
#define MB_FILL_KEY(key, ctx)                                                  \
	({                                                                     \
		int __ret = 0;                                                 \
		if ((ctx)->family == MB_AF_INET) {                             \
			mb_ip_from_v4((key)->local_ip, (ctx)->local_ip4);      \
			mb_ip_from_v4((key)->remote_ip, (ctx)->remote_ip4);    \
		} else if ((ctx)->family == MB_AF_INET6) {                     \
			/* v4-mapped AF_INET6 sockets already hold ::ffff:x */ \
			(key)->local_ip[0] = (ctx)->local_ip6[0];              \
			(key)->local_ip[1] = (ctx)->local_ip6[1];              \
			(key)->local_ip[2] = (ctx)->local_ip6[2];              \
			(key)->local_ip[3] = (ctx)->local_ip6[3];              \
			(key)->remote_ip[0] = (ctx)->remote_ip6[0];            \
			(key)->remote_ip[1] = (ctx)->remote_ip6[1];            \
			(key)->remote_ip[2] = (ctx)->remote_ip6[2];            \
			(key)->remote_ip[3] = (ctx)->remote_ip6[3];            \
		} else {                                                       \
			__ret = -1;                                            \
		}                                                              \
		(key)->local_port = mb_local_port_net((ctx)->local_port);      \
		(key)->remote_port = mb_remote_port_net((ctx)->remote_port);   \
		__ret;                                                         \
	})

#endif
