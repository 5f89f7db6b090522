#!/bin/bash
# End-to-end smoke test of the compiled programs with bpftool only (no meshbpf code):
# probe the kernel's features, load build/bpf/sockops.o + sk_msg.o with shared pinned
# maps, attach to a child cgroup and the sockhash, mark two veth-connected namespaces
# as local endpoints with a BYPASS verdict for port 5201, send 1 MiB with socat and
# check that it arrived intact and went socket to socket (mb_stats).
#
#   scripts/vmtest --cmd scripts/vm/smoke.sh      (or run it as root on a host)
#
# Everything it makes is named mbt-smoke-<pid> and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ID=mbt-smoke-$$
NSA=$ID-a NSB=$ID-b
CGROOT=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
CG=$CGROOT/$ID
PIN=/sys/fs/bpf/$ID
TMP=$(mktemp -d /tmp/$ID.XXXX)
SRV=""

cleanup() {
	set +e
	[ -n "$SRV" ] && kill "$SRV" 2>/dev/null
	bpftool prog detach pinned "$PIN/sk_msg" msg_verdict pinned "$PIN/maps/mb_sockets" 2>/dev/null
	bpftool cgroup detach "$CG" sock_ops pinned "$PIN/sockops" 2>/dev/null
	rm -rf "$PIN" "$TMP"
	ip netns del "$NSA" 2>/dev/null
	ip netns del "$NSB" 2>/dev/null
	rmdir "$CG" 2>/dev/null
}
trap cleanup EXIT

echo "== kernel $(uname -r); cgroup2 at $CGROOT"
[ -f build/bpf/sockops.o ] && [ -f build/bpf/sk_msg.o ] || {
	echo "build/bpf/*.o missing: run npm run build (or build:bpf) on the host first"
	exit 1
}

echo "== kfeatures"
cc -O2 -Wall -o "$TMP/kfeatures" scripts/vm/kfeatures.c -lbpf
"$TMP/kfeatures" "$CGROOT"

echo "== bpftool feature probe (excerpt)"
bpftool feature probe kernel >"$TMP/probe.txt" 2>&1 || true
awk '/^eBPF helpers supported for program type/ { sect = $NF; sub(/:$/, "", sect); next }
	/^eBPF (program_type (sock_ops|sk_msg)|map_type (sockhash|lpm_trie|hash|percpu_array)) / ||
	/CONFIG_(BPF_STREAM_PARSER|NET_SOCK_MSG|CGROUP_BPF|BPF_JIT|DEBUG_INFO_BTF) / { print; next }
	/bpf_(get_netns_cookie|msg_redirect_hash|sock_hash_update)$/ && (sect == "sock_ops" || sect == "sk_msg") { print sect ":" $0 }' "$TMP/probe.txt" || true

echo "== load and pin"
mkdir -p "$PIN/maps"
bpftool prog load build/bpf/sockops.o "$PIN/sockops" type sockops pinmaps "$PIN/maps"
bpftool prog load build/bpf/sk_msg.o "$PIN/sk_msg" type sk_msg \
	map name mb_sockets pinned "$PIN/maps/mb_sockets" \
	map name mb_endpoints pinned "$PIN/maps/mb_endpoints" \
	map name mb_policy pinned "$PIN/maps/mb_policy" \
	map name mb_stats pinned "$PIN/maps/mb_stats"
mkdir "$CG"
bpftool cgroup attach "$CG" sock_ops pinned "$PIN/sockops" multi
bpftool prog attach pinned "$PIN/sk_msg" msg_verdict pinned "$PIN/maps/mb_sockets"
bpftool cgroup show "$CG"

echo "== topology: $NSA 198.18.0.1 <-veth-> $NSB 198.18.0.2"
ip netns add "$NSA"
ip netns add "$NSB"
ip link add mbt-va type veth peer name mbt-vb
ip link set mbt-va netns "$NSA"
ip link set mbt-vb netns "$NSB"
ip -n "$NSA" addr add 198.18.0.1/24 dev mbt-va
ip -n "$NSB" addr add 198.18.0.2/24 dev mbt-vb
for n in "$NSA" "$NSB"; do ip -n "$n" link set lo up; done
ip -n "$NSA" link set mbt-va up
ip -n "$NSB" link set mbt-vb up

# mb_endpoints: {prefixlen=128 (host order), ::ffff:198.18.0.x} -> {flags LOCAL, net 0, workload x}
for x in 01 02; do
	bpftool map update pinned "$PIN/maps/mb_endpoints" \
		key hex 80 00 00 00 00 00 00 00 00 00 00 00 00 00 ff ff c6 12 00 $x \
		value hex 01 00 00 00 00 00 00 00 $x 00 00 00 00 00 00 00
done
# mb_policy: {::ffff:198.18.0.2, port 5201 network order} -> {BYPASS, rule 7}
bpftool map update pinned "$PIN/maps/mb_policy" \
	key hex 00 00 00 00 00 00 00 00 00 00 ff ff c6 12 00 02 14 51 00 00 \
	value hex 01 00 00 00 07 00 00 00

echo "== 1 MiB with socat, both ends in $CG"
head -c 1048576 /dev/urandom >"$TMP/in"
sh -c "echo \$\$ >$CG/cgroup.procs; exec ip netns exec $NSB socat -u TCP-LISTEN:5201,bind=198.18.0.2,reuseaddr OPEN:$TMP/out,creat,trunc" &
SRV=$!
for _ in $(seq 50); do
	ip netns exec "$NSB" ss -Hltn 'sport = :5201' | grep -q 5201 && break
	sleep 0.1
done
sh -c "echo \$\$ >$CG/cgroup.procs; exec ip netns exec $NSA socat -u OPEN:$TMP/in TCP:198.18.0.2:5201"
wait "$SRV"
SRV=""
cmp "$TMP/in" "$TMP/out" && echo "data intact"

stat() { # sum of one mb_stats slot over CPUs
	bpftool -j map lookup pinned "$PIN/maps/mb_stats" key "$1" 0 0 0 |
		node -e '
			let s = "";
			process.stdin.on("data", (d) => (s += d)).on("end", () => {
				// values are per-CPU; each value is a number (BTF) or little-endian hex bytes
				const le = (v) => (Array.isArray(v) ? v.reduceRight((a, b) => (a << 8n) | BigInt(b), 0n) : BigInt(v));
				console.log(JSON.parse(s).values.reduce((t, v) => t + le(v.value), 0n).toString());
			});'
}
ins=$(stat 1)
msgs=$(stat 10)
bytes=$(stat 11)
miss=$(stat 12)
echo "mb_stats: established=$(stat 0) inserted=$ins redirected_msgs=$msgs redirected_bytes=$bytes peer_missing_msgs=$miss"
[ "$ins" = 2 ] && [ "$bytes" -ge 1048576 ] || {
	echo "FAIL: expected 2 sockets inserted and >= 1 MiB redirected"
	exit 1
}
echo "OK: sockops inserted both sockets; sk_msg redirected the data socket to socket"
