/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Map definitions shared by every meshbpf program object. Each object declares
 * the same maps; the loader makes them one set of kernel maps (reusing the fds,
 * or the pins under <pin-dir>/maps/), so the definitions must stay identical.
 * max_entries here are defaults; the loader may override them before load.
 */
#ifndef MESHBPF_MAPS_H
#define MESHBPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "meshbpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct mb_sock_key);
	__type(value, __u64);
} mb_sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct mb_endpoint_key);
	__type(value, struct mb_endpoint_value);
} mb_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct mb_policy_key);
	__type(value, struct mb_policy_value);
} mb_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MB_STAT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} mb_stats SEC(".maps");

/* Per-socket state, freed with the socket: the peer's key (computed once by
 * sockops, so sk_msg builds no key per message), the leg, the owner mark from
 * the connect hook, and FELL_BACK: this socket once sent through the stack
 * (peer missing); from then on it never redirects, because the receiver reads
 * redirected data (its psock queue) before data still in its TCP receive
 * queue, and a later redirect could overtake it. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for socket storage */
	__type(key, int);
	__type(value, struct mb_sk_state);
} mb_sk_state SEC(".maps");

/* One slot per pair of sockets (struct mb_sk_state.turn): the side that sent
 * last (MB_SIDE_*), so sk_msg tells an exchange from a one-way stream. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MB_TURN_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} mb_turns SEC(".maps");

/* Learned streams (struct mb_stream_key in meshbpf.h): written by sk_msg at a
 * switch, read by sockops before a direct pair is inserted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MB_STREAM_ENTRIES);
	__type(key, struct mb_stream_key);
	__type(value, struct mb_stream_value);
} mb_streams SEC(".maps");

/* The mb_streams key of a pair: the connecting end's address, the destination,
 * the namespace for loopback pairs (0 otherwise). sk_msg and sockops build it
 * from different sides of the pair; this is the one layout both write. */
static __always_inline void mb_stream_key(struct mb_stream_key *k, const __u32 client_ip[4],
					  const struct mb_policy_key *dst, __u64 netns_cookie)
{
	__builtin_memcpy(k->client_ip, client_ip, sizeof(k->client_ip));
	__builtin_memcpy(k->server_ip, dst->ip, sizeof(k->server_ip));
	k->server_port = dst->port;
	k->netns_cookie = netns_cookie;
}

/* Sidecar settings; one entry, all zero (= sidecar pairing off) until the
 * agent writes it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mb_config);
} mb_config SEC(".maps");

/* Local addresses (or pod CIDRs) whose pods run a sidecar with Istio's capture. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mb_endpoint_key);
	__type(value, __u32);
} mb_sidecar SEC(".maps");

/* Client claims of captured legs (see struct mb_leg_value). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct mb_policy_key);
	__type(value, struct mb_leg_value);
} mb_legs SEC(".maps");

/* Service VIPs resolved at connect (see struct mb_service_value). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* written by the agent only: no prealloc'd megabytes */
	__type(key, struct mb_policy_key);
	__type(value, struct mb_service_value);
} mb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mb_backend_key);
	__type(value, struct mb_backend_value);
} mb_backends SEC(".maps");

/* The VIP a translated socket connected to (answers getpeername). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mb_sk_vip);
} mb_sk_vip SEC(".maps");

/* Pod addresses per network namespace, learned by sockops (LRU: namespaces
 * come and go; an evicted one only loses translation until its next socket). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct mb_netns_value);
} mb_netns SEC(".maps");

/* In-pod capture skipping (see meshbpf.h), written by `meshbpf inpod attach`:
 * mb_inpod: the addresses of each enrolled pod -> its netns cookie;
 * mb_inpod_ns: the enrolled netns cookies (sockops puts their listeners in
 * mb_listeners, where bpf/inpod.c finds the app's listener for a port). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mb_endpoint_key);
	__type(value, __u64);
} mb_inpod SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u32);
} mb_inpod_ns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct mb_listener_key);
	__type(value, __u64);
} mb_listeners SEC(".maps");

/* A /128 LPM key for one address: the longest prefix holding it wins. */
static __always_inline struct mb_endpoint_key mb_host_key(const __u32 ip[4])
{
	struct mb_endpoint_key k = { .prefixlen = 128 };

	k.ip[0] = ip[0];
	k.ip[1] = ip[1];
	k.ip[2] = ip[2];
	k.ip[3] = ip[3];
	return k;
}

static __always_inline const struct mb_endpoint_value *mb_endpoint(const __u32 ip[4])
{
	struct mb_endpoint_key k = mb_host_key(ip);

	return bpf_map_lookup_elem(&mb_endpoints, &k);
}

/* Non-NULL when the address is a pod with Istio's sidecar capture. */
static __always_inline const __u32 *mb_sidecar_pod(const __u32 ip[4])
{
	struct mb_endpoint_key k = mb_host_key(ip);

	return bpf_map_lookup_elem(&mb_sidecar, &k);
}

/* The netns cookie of the enrolled pod with this address, or NULL. */
static __always_inline const __u64 *mb_inpod_pod(const __u32 ip[4])
{
	struct mb_endpoint_key k = mb_host_key(ip);

	return bpf_map_lookup_elem(&mb_inpod, &k);
}

static __always_inline const struct mb_config *mb_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&mb_config, &zero);
}

static __always_inline void mb_count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&mb_stats, &idx);

	/* per-CPU slot: no atomics needed */
	if (v)
		*v += n;
}

#endif
