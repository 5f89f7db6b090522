/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * meshbpf kernel ABI: every struct that crosses the user/kernel boundary lives
 * here. The TypeScript codecs in src/maps/codecs.ts mirror these layouts byte
 * for byte; the loader checks sizes against the kernel's key/value sizes, and a
 * unit test checks the codec sizes against the constants below.
 *
 * Conventions:
 *  - IPs are 16 bytes. IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so an AF_INET
 *    socket and a dual-stack AF_INET6 socket talking IPv4 produce the same key.
 *  - Ports in keys are network byte order.
 *  - All padding is explicit and zeroed, so keys hash the same on both sides.
 */
#ifndef MESHBPF_H
#define MESHBPF_H

#include <linux/types.h>

#define MB_AF_INET 2
#define MB_AF_INET6 10

/* mb_sockets (SOCKHASH) key: one established TCP socket, seen from itself. */
struct mb_sock_key {
	__u32 local_ip[4];  /* 16 bytes, network order words */
	__u32 remote_ip[4];
	__u16 local_port;  /* network order */
	__u16 remote_port; /* network order */
	__u32 _pad;        /* zero */
	/* netns cookie when the connection is on loopback (two pods may each own
	 * 127.0.0.1:8080); 0 otherwise, so the two ends in different namespaces
	 * produce mirror-image keys. */
	__u64 netns_cookie;
};
#define MB_SOCK_KEY_SIZE 48

/* mb_endpoints (LPM_TRIE) key: prefixlen counts bits of the 16-byte address;
 * an IPv4 /24 is stored as ::ffff:a.b.c.0/120 (96 + 24). */
struct mb_endpoint_key {
	__u32 prefixlen; /* host order, as the LPM trie wants */
	__u32 ip[4];
};
#define MB_ENDPOINT_KEY_SIZE 20

#define MB_EP_LOCAL (1u << 0) /* lives on this node (node IP or local pod CIDR) */
#define MB_EP_MESH (1u << 1)  /* part of the mesh (known to the control plane) */

struct mb_endpoint_value {
	__u32 flags;       /* MB_EP_* */
	__u32 network_id;  /* 0 = this node's network; others never short-circuit */
	__u32 workload_id; /* opaque id from the control plane, for explain/dump */
	__u32 _pad;
};
#define MB_ENDPOINT_VALUE_SIZE 16

/* mb_policy (HASH) key: a destination (server side) ip:port. */
struct mb_policy_key {
	__u32 ip[4];
	__u16 port; /* network order */
	__u16 _pad;
};
#define MB_POLICY_KEY_SIZE 20

enum mb_verdict {
	MB_VERDICT_NONE = 0,   /* unknown: normal path */
	MB_VERDICT_BYPASS = 1, /* plain L4: short-circuit socket to socket */
	MB_VERDICT_PROXY = 2,  /* L7 or authorization: must reach Envoy */
};

struct mb_policy_value {
	__u32 verdict; /* enum mb_verdict */
	__u32 rule_id; /* which compiled rule produced it (for explain) */
};
#define MB_POLICY_VALUE_SIZE 8

/* mb_stats (PERCPU_ARRAY): one __u64 per counter; userspace sums over CPUs.
 * Append only: the index is the ABI. MB_STAT_SLOTS leaves room so an upgrade
 * that adds counters can keep reusing the pinned map. */
enum mb_stat {
	MB_STAT_SOCKOPS_ESTABLISHED = 0, /* active+passive established callbacks */
	MB_STAT_INSERTED,                /* sockets inserted into mb_sockets */
	MB_STAT_SKIP_FAMILY,             /* not AF_INET/AF_INET6 */
	MB_STAT_SKIP_LOCAL_UNKNOWN,      /* local address not a known local mesh address */
	MB_STAT_SKIP_REMOTE_UNKNOWN,     /* remote address not a known local mesh address */
	MB_STAT_SKIP_NETWORK,            /* ends on different networks */
	MB_STAT_SKIP_NO_POLICY,          /* no verdict for the server side */
	MB_STAT_SKIP_PROXY,              /* verdict PROXY (L7 / authz) */
	MB_STAT_INSERT_FAILED,           /* sock_hash_update failed (not map full) */
	MB_STAT_MAP_FULL,                /* sock_hash_update failed: map full */
	MB_STAT_REDIRECT_MSGS,           /* sk_msg redirected to the peer socket */
	MB_STAT_REDIRECT_BYTES,
	MB_STAT_PEER_MISSING_MSGS,       /* sk_msg found no peer: passed to the stack */
	MB_STAT_PEER_MISSING_BYTES,
	MB_STAT_SKIP_LOOPBACK,           /* loopback, but no netns cookie helper to isolate it */
	MB_STAT_SOCKETS_FELL_BACK,       /* sockets pinned to the stack after their first peer miss */
	/* Sidecar legs (Istio capture kept, both ends of one leg paired). Each
	 * counts sockets inserted, once per end. */
	MB_STAT_LEG_OUTBOUND,            /* app <-> its sidecar's outbound capture port (15001) */
	MB_STAT_LEG_MESH,                /* to/from a sidecar's inbound capture port (15006), or sidecar -> plain pod */
	MB_STAT_LEG_INBOUND,             /* sidecar (from 127.0.0.6 / ::6) <-> its app */
	MB_STAT_SKIP_SIDECAR_OWNER,      /* socket in a captured pod whose owner (app/proxy) is unknown */
	MB_STAT_SKIP_SIDECAR_AMBIGUOUS,  /* two live sockets share the client address: never guess */
	MB_STAT_SKIP_SIDECAR_UNMATCHED,  /* server whose client claimed another server socket */
	MB_STAT_SIDECAR_TABLE_FULL,      /* mb_legs full: the leg keeps the stack */
	MB_STAT_SPLICE_READS,            /* splice(2)/sendfile(2) reads of a bypassed socket (data was lost) */
	MB_STAT_SPLICE_REFUSED,          /* such reads refused with EINVAL before reading (nothing lost) */
	MB_STAT_SKIP_EXCLUDED,           /* destination in mb_no_bypass (operator or splice reader) */
	/* Service VIPs resolved at connect (bpf/connect.c). Counted only for
	 * connects to a VIP:port in mb_services. */
	MB_STAT_VIP_TRANSLATED,          /* connect rewritten to a local backend */
	MB_STAT_VIP_NO_BACKEND,          /* no local backend (count 0, or the slot vanished under us) */
	MB_STAT_VIP_SKIP_PROXY,          /* service or chosen backend not BYPASS */
	MB_STAT_VIP_SKIP_CAPTURED,       /* client pod has a sidecar: it must see the VIP */
	MB_STAT_VIP_SKIP_SOURCE,         /* client's netns not learned yet (no pod address known) */
	MB_STAT_VIP_SKIP_NETWORK,        /* client or backend not local, or on different networks */
	MB_STAT_VIP_PEERNAME,            /* getpeername answered with the VIP */
	/* Streams of small writes (bpf/sk_msg.c): a paired socket whose sends
	 * look like a one-way stream of small writes moves to the stack for good
	 * (order-safe: its peer drains the redirected data first), where TCP
	 * batches them. redirect + peer missing + stream bytes = bytes sent. */
	MB_STAT_STREAM_SWITCHED,         /* sockets moved from the redirect to the stack */
	MB_STAT_STREAM_MSGS,             /* messages such sockets sent through the stack */
	MB_STAT_STREAM_BYTES,
	/* Istio ambient, in-pod capture (bpf/inpod.c) */
	MB_STAT_INPOD_MARKED,            /* client sockets given ztunnel's mark: its outbound capture skipped */
	MB_STAT_INPOD_STEERED,           /* SYNs handed to the server app's own listener past the inbound capture */
	MB_STAT_INPOD_NOT_STEERED,       /* a marked flow's SYN left to the capture (no known listener, stale claim) */
	MB_STAT_LEG_INPOD,               /* sockets paired as an in-pod flow */
	MB_STAT_INPOD_GETSOCKNAME,       /* getsockname answered with the port the client asked for */
	MB_STAT_INPOD_LISTENERS,         /* listening sockets of enrolled pods recorded in mb_listeners */
	/* Learned stream destinations (mb_streams, below) */
	MB_STAT_STREAM_LEARNED,          /* client -> destination pairs recorded after a switch */
	MB_STAT_STREAM_KEPT,             /* sockets kept out of mb_sockets: their pair is a learned stream */
	MB_STAT_MAX,
};
#define MB_STAT_SLOTS 64 /* 32 until 0.2: the sidecar, splice and VIP counters took 33 */

/*
 * Sidecar capture (Istio's istio-iptables rules stay in every captured pod;
 * meshbpf never changes where a connection goes, it only pairs the two
 * sockets of one captured leg). mb_config[0] holds the settings, mb_sidecar
 * (LPM trie, same key as mb_endpoints) the local addresses whose pod has them.
 */
#define MB_CFG_SIDECAR (1u << 0) /* sidecar pairing on */
#define MB_CFG_PORTS 8

struct mb_config {
	__u32 flags;               /* MB_CFG_* */
	__u32 proxy_uid;           /* istio-proxy's uid (1337): exempt from capture */
	__u32 proxy_gid;
	__u16 outbound_port;       /* network order: REDIRECT target for outbound (15001) */
	__u16 inbound_port;        /* network order: REDIRECT target for inbound (15006) */
	__u32 passthrough_v4;      /* network order: inbound passthrough source (127.0.0.6) */
	__u32 passthrough_v6[4];   /* ::6 */
	__u16 inbound_exclude[MB_CFG_PORTS];  /* network order, 0 = unused (15008 15090 15021 15020) */
	__u16 outbound_exclude[MB_CFG_PORTS]; /* network order, 0 = unused */
};
#define MB_CONFIG_SIZE 68

/*
 * mb_legs (HASH): key = a client socket's own address (struct mb_policy_key
 * layout: ip, port), value = which server socket that client expects at the
 * other end of its captured leg. The server confirms at its PASSIVE_ESTABLISHED
 * (which always follows its client's ACTIVE_ESTABLISHED): only a server whose
 * own key equals the claim is paired. Two live clients with one address (NAT
 * may remap the later one's port on the wire) poison the entry: nobody pairs.
 */
#define MB_LEG_POISONED (1u << 0)
#define MB_LEG_STEERED (1u << 1) /* in-pod: bpf/inpod.c handed the SYN to the server app's own listener */

enum mb_leg {
	MB_LEG_NONE = 0,
	MB_LEG_OUTBOUND = 1,
	MB_LEG_MESH = 2,
	MB_LEG_INBOUND = 3,
	MB_LEG_DIRECT = 4, /* no capture: mirror-image keys, verdict BYPASS */
	MB_LEG_INPOD = 5,  /* Istio ambient in-pod capture, skipped for a BYPASS flow (bpf/inpod.c) */
};

struct mb_leg_value {
	struct mb_sock_key client; /* the client's key in mb_sockets */
	struct mb_sock_key claim;  /* the server socket's key the client expects */
	__u64 cookie;              /* client socket cookie: only the owner removes it */
	__u32 flags;               /* MB_LEG_POISONED, MB_LEG_STEERED */
	__u32 leg;                 /* enum mb_leg */
	__u64 ts_ns;               /* bpf_ktime_get_ns() of the claim (in-pod: honoured for MB_INPOD_SYN_NS) */
};
#define MB_LEG_VALUE_SIZE 120

/* mb_sk_state (SK_STORAGE) value: per-socket state, freed with the socket.
 * Read and written by the BPF programs only. Until 0.3 flags and leg were
 * __u32: on little-endian hosts the old layout reads the same (the new fields
 * read 0), so sockets paired before an upgrade keep working. */
#define MB_SKS_FELL_BACK (1u << 0) /* sent through the stack once: never redirect again */
#define MB_SKS_PAIRED (1u << 1)    /* peer below is valid; the socket is in mb_sockets */
#define MB_SKS_APP (1u << 2)       /* connect() by a non-proxy uid/gid (cgroup/connect hook) */
#define MB_SKS_PROXY (1u << 3)     /* connect() by the proxy uid/gid */
#define MB_SKS_STREAM (1u << 4)    /* a one-way stream of small writes: sends take the stack for good */
#define MB_SKS_INPOD (1u << 5)     /* in-pod flow: this client was given ztunnel's mark (bpf/inpod.c) */
#define MB_SKS_INPOD_SERVER (1u << 6) /* in-pod flow, server side: peer.remote_port is the port the client asked for */

struct mb_sk_state {
	__u16 flags; /* MB_SKS_* */
	__u16 turn;  /* this pair's slot in mb_turns (sockops; both ends compute the same) */
	__u8 leg;    /* enum mb_leg */
	__u8 side;   /* MB_SIDE_*: what this end writes into the turn slot when it sends */
	__u16 run;   /* sk_msg: small sends in a row with no send by the peer in between */
	struct mb_sock_key peer; /* the other end's key in mb_sockets */
};
#define MB_SK_STATE_SIZE 56

/*
 * Streams of small writes (bpf/sk_msg.c). A redirect costs a fixed amount per
 * sendmsg (sk_msg build, queueing on the peer's psock, a wakeup); the stack
 * batches a stream of small writes into large segments (autocork, Nagle, GRO)
 * and wins. Request/response traffic alternates direction and keeps the
 * redirect (its latency gain is the point). The two ends of a pair share one
 * slot of mb_turns: each send writes its side there, so a send that finds its
 * own side sees that the peer has not sent since. MB_STREAM_RUN small sends in
 * a row like that make the socket a stream: it sends through the stack from
 * then on (order-safe: the peer reads its psock queue, the earlier redirected
 * bytes, before its TCP receive queue; the reverse switch is never made).
 * Slot collisions between pairs only make a stream look like an exchange:
 * that pair keeps redirecting, as before.
 */
#define MB_TURN_SLOTS 8192    /* mb_turns entries (a power of 2) */
#define MB_SIDE_ACTIVE 1      /* the end that connected */
#define MB_SIDE_PASSIVE 2     /* the accepted end */
#define MB_STREAM_SMALL 256   /* bytes: a send below this is small (the redirect wins from 256 B up, bench/report) */
#define MB_STREAM_RUN 128     /* small sends in a row, none by the peer, before the switch */

/*
 * Learned streams. A switched socket keeps its psock, so each of its sends
 * still passes tcp_bpf_sendmsg (measured 5-12% at 1-64 B), and removing a live
 * socket from mb_sockets is not safe (its peer may be redirecting into its
 * psock queue at that moment; those bytes would be freed). So the switch is
 * remembered for the pair's client address and destination (direct flows
 * only), and for MB_STREAM_LEARN_NS after the last switch the next
 * connections of that pair are not put into mb_sockets at all: exactly the
 * stack, nothing to switch. When the entry is older, the next connection is
 * paired again (a probe) and its own sends decide anew. A learned entry only
 * ever keeps connections on the stack, the always-safe direction; an LRU map,
 * so it never fills.
 */
struct mb_stream_key {
	__u32 client_ip[4]; /* the connecting end's address */
	__u32 server_ip[4]; /* the destination (the verdict's address) */
	__u64 netns_cookie; /* loopback pairs: the namespace (struct mb_sock_key) */
	__u16 server_port;  /* network order */
	__u16 _pad;
	__u32 _pad2;
};
#define MB_STREAM_KEY_SIZE 48

struct mb_stream_value {
	__u64 learned_ns;   /* bpf_ktime_get_ns() of the last switch */
	__u64 first_ns;     /* of the first */
	__u64 kept;         /* sockets kept on the stack because of this entry */
	__u64 switches;     /* sockets of this pair that switched */
};
#define MB_STREAM_VALUE_SIZE 32
#define MB_STREAM_LEARN_NS (60ull * 1000000000ull)
#define MB_STREAM_ENTRIES 16384

/*
 * Service VIPs (connect-time resolution, bpf/connect.c). mb_services (HASH):
 * key = VIP:port (struct mb_policy_key layout), value below. mb_backends
 * (HASH): {service id, slot} -> a LOCAL endpoint ip:targetPort; slots
 * 0..count-1 are valid. Update order (src/maps/plan.ts): backends are written
 * before the count grows, the count shrinks before backends are deleted, so a
 * slot below count always holds a backend (Kmesh #1042).
 */
#define MB_SVC_BYPASS (1u << 0) /* the compiler's verdict for VIP:port is BYPASS */

struct mb_service_value {
	__u32 id;      /* service id: the mb_backends key prefix */
	__u32 count;   /* local backends in slots 0..count-1 */
	__u32 flags;   /* MB_SVC_* */
	__u32 rule_id; /* the compiled rule (for explain) */
};
#define MB_SERVICE_VALUE_SIZE 16

struct mb_backend_key {
	__u32 service_id;
	__u32 slot;
};
#define MB_BACKEND_KEY_SIZE 8

struct mb_backend_value {
	__u32 ip[4]; /* same family as the VIP (v4-mapped for IPv4) */
	__u16 port;  /* network order: the target port */
	__u16 _pad;
};
#define MB_BACKEND_VALUE_SIZE 20

/* mb_sk_vip (SK_STORAGE): what a translated socket connected to, so
 * getpeername answers with the VIP while the peer is still that backend. */
struct mb_sk_vip {
	__u32 vip[4];
	__u32 backend[4];
	__u16 vip_port;     /* network order */
	__u16 backend_port; /* network order */
	__u32 _pad;
};
#define MB_SK_VIP_SIZE 40

/* mb_netns (LRU_HASH): netns cookie -> the pod addresses sockops saw in that
 * namespace (the client's own address is unknown at connect). */
#define MB_NS_PROXY (1u << 0) /* a proxy uid/gid connected from this netns: a sidecar pod */

struct mb_netns_value {
	__u32 ip4[4]; /* v4-mapped; all zero = none seen */
	__u32 ip6[4];
	__u32 flags;  /* MB_NS_* */
	__u32 _pad;
};
#define MB_NETNS_VALUE_SIZE 40

_Static_assert(sizeof(struct mb_service_value) == MB_SERVICE_VALUE_SIZE, "mb_service_value");
_Static_assert(sizeof(struct mb_backend_key) == MB_BACKEND_KEY_SIZE, "mb_backend_key");
_Static_assert(sizeof(struct mb_backend_value) == MB_BACKEND_VALUE_SIZE, "mb_backend_value");
_Static_assert(sizeof(struct mb_sk_vip) == MB_SK_VIP_SIZE, "mb_sk_vip");
_Static_assert(sizeof(struct mb_netns_value) == MB_NETNS_VALUE_SIZE, "mb_netns_value");
_Static_assert(MB_STAT_MAX <= MB_STAT_SLOTS, "mb_stats has a slot for every counter");
_Static_assert(sizeof(struct mb_sock_key) == MB_SOCK_KEY_SIZE, "mb_sock_key");
_Static_assert(sizeof(struct mb_config) == MB_CONFIG_SIZE, "mb_config");
_Static_assert(sizeof(struct mb_leg_value) == MB_LEG_VALUE_SIZE, "mb_leg_value");
_Static_assert(sizeof(struct mb_sk_state) == MB_SK_STATE_SIZE, "mb_sk_state");
/* mb_no_bypass (HASH, key struct mb_policy_key): destinations that never get
 * a bypass, whatever mb_policy says. Written by the operator (`meshbpf exclude
 * add`) or by the splice guard (bpf/splice.c) when a bypassed socket of that
 * destination was read with splice(2). The policy sync never touches it. */
enum mb_exclude_reason {
	MB_EXCLUDE_OPERATOR = 1,
	MB_EXCLUDE_SPLICE = 2,
};

struct mb_exclude_value {
	__u32 reason;   /* enum mb_exclude_reason */
	__u32 pid;      /* splice: tgid of the first reader that spliced */
	__u64 hits;     /* splice reads seen on bypassed sockets of this destination */
	__u64 first_ns; /* splice: bpf_ktime_get_ns() of the first (CLOCK_MONOTONIC) */
	char comm[16];  /* splice: that reader's command name */
};
#define MB_EXCLUDE_VALUE_SIZE 40

/*
 * Istio ambient, in-pod capture (istio-cni writes the rules in each pod's
 * network namespace; istio/istio cni/pkg/iptables). Sockets carrying mark
 * 0x539 under mask 0xfff are exempt from the outbound REDIRECT (15001) and
 * from the inbound one (15006). mb_inpod (LPM trie, mb_endpoints' key) maps
 * the addresses of the pods enrolled with `meshbpf inpod attach` (whose
 * namespace runs bpf/inpod.c) to their netns cookie; only flows between two
 * of them are skipped. mb_listeners (SOCKHASH) holds their listening sockets.
 */
struct mb_listener_key {
	__u64 netns_cookie;
	__u16 port;   /* network order */
	__u16 family; /* AF_INET / AF_INET6 of the listening socket */
	__u32 _pad;
};
#define MB_LISTENER_KEY_SIZE 16
_Static_assert(sizeof(struct mb_listener_key) == MB_LISTENER_KEY_SIZE, "mb_listener_key");

#define MB_INPOD_MARK 0x539
#define MB_INPOD_MASK 0xfff
#define MB_INPOD_INBOUND_PORT 15006 /* ZtunnelInboundPlaintextPort: where the inbound REDIRECT sends the SYN */
#define MB_INPOD_HBONE_PORT 15008   /* never redirected by the inbound rule */
#define MB_INPOD_SYN_NS (10ull * 1000000000ull) /* a claim steers SYNs (and their retransmits) for 10 s */

#endif /* MESHBPF_H */
