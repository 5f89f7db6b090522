/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The splice guard's maps and its one call site in sockops.
 *
 * Why: sk_msg redirects into the peer's psock queue (ingress_msg), which only
 * recvmsg/read drain (tcp_bpf_recvmsg). splice(2) goes through tcp_splice_read,
 * which reads the TCP receive queue only: a splicing reader of a bypassed
 * socket gets EOF and the redirected bytes are freed with the socket.
 * bpf/splice_refuse.c refuses such splices with EINVAL where the kernel allows
 * fentry/fmod_ret (readers fall back to read(2)); bpf/splice.c only detects
 * them. Both record the destination here, so later connections keep the stack.
 */
#ifndef MESHBPF_SPLICE_H
#define MESHBPF_SPLICE_H

#include "maps.h"

/* Destinations that are never bypassed (operator exclusions and splice readers). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct mb_policy_key);
	__type(value, struct mb_exclude_value);
} mb_no_bypass SEC(".maps");

/* Per socket that sockops judged eligible: its destination (the server side),
 * so the splice guard knows the socket is meshbpf's and what to exclude. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for socket storage */
	__type(key, int);
	__type(value, struct mb_policy_key);
} mb_sk_splice SEC(".maps");

/* sockops, right before the sockhash insert: 1 = keep this connection on the
 * stack (destination excluded, or the mark could not be made: an unmarked
 * bypassed socket would be unguarded); 0 = go on. */
static __always_inline int mb_splice_guard(struct bpf_sock_ops *skops, struct mb_policy_key *dst)
{
	struct bpf_sock *sk;

	if (bpf_map_lookup_elem(&mb_no_bypass, dst)) {
		mb_count(MB_STAT_SKIP_EXCLUDED, 1);
		return 1;
	}
	sk = skops->sk;
	if (!sk || !bpf_sk_storage_get(&mb_sk_splice, sk, dst, BPF_SK_STORAGE_GET_F_CREATE)) {
		mb_count(MB_STAT_INSERT_FAILED, 1);
		return 1;
	}
	return 0;
}

#ifdef MB_SPLICE_TRACING /* the tracing objects (splice.c, splice_refuse.c) */

/* CO-RE views of the kernel structs (only the fields used; libbpf relocates
 * the offsets against the running kernel's BTF). */
struct sock {
	void *sk_user_data; /* the psock while the socket is in a sockmap/sockhash */
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

/* Count hits on the destination; create its entry on the first one. */
static __always_inline void mb_splice_record(const struct mb_policy_key *dst)
{
	struct mb_exclude_value *v = bpf_map_lookup_elem(&mb_no_bypass, dst);
	struct mb_exclude_value nv = {};

	if (v) {
		__sync_fetch_and_add(&v->hits, 1);
		return;
	}
	nv.reason = MB_EXCLUDE_SPLICE;
	nv.pid = bpf_get_current_pid_tgid() >> 32;
	nv.hits = 1;
	nv.first_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(nv.comm, sizeof(nv.comm));
	/* Full map: nothing recorded; the counters still show it. */
	bpf_map_update_elem(&mb_no_bypass, dst, &nv, BPF_NOEXIST);
}

/* The destination of a socket meshbpf bypassed and that still has a psock
 * (so redirected data may wait in its ingress_msg), or NULL. */
static __always_inline struct mb_policy_key *mb_bypassed_dst(struct sock *sk)
{
	/* Cheapest test first: almost no socket on a node has a psock. */
	if (!sk || !sk->sk_user_data)
		return 0;
	return bpf_sk_storage_get(&mb_sk_splice, sk, 0, 0);
}

#endif /* MB_SPLICE_TRACING */

#endif
