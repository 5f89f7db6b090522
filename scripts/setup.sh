#!/usr/bin/env bash
# One-time (idempotent) machine setup for meshbpf on Debian 12 / Ubuntu 22.04+,
# as root: system packages, bpffs, npm dependencies, build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (installs packages and mounts bpffs)" >&2
  exit 1
fi

# clang/llvm: compile the BPF C; libbpf1: the loader; bpftool: tests and debugging;
# iproute2: namespaces and veths; iperf3/socat: the real traffic peers;
# util-linux: setpriv (tests run one command as an unprivileged user);
# qemu/busybox/cpio/xz/zstd: the kernel-VM test runner (npm run test:vm);
# sockperf/iptables: the benchmarks (npm run bench: latency peer, kube-proxy-like rules);
# haproxy/python3 + iptables: the sidecar tests (HAProxy as the IPv4 sidecar behind
# Istio's nat rules, test/peers/*.py for IPv6 and same-port clients);
# prometheus: its promtool checks /metrics in the tests.
PKGS=(clang llvm libbpf1 libbpf-dev bpftool iproute2 iperf3 socat util-linux ca-certificates
      qemu-system-x86 busybox-static cpio kmod xz-utils zstd sockperf iptables haproxy python3 prometheus)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # haproxy is a test peer (the sidecar stand-in the tests start themselves):
  # stop and disable the system service the package may have started.
  if printf '%s\n' "${missing[@]}" | grep -qx haproxy && command -v systemctl >/dev/null && systemctl is-active -q haproxy 2>/dev/null; then
    systemctl disable --now -q haproxy || true
  elif printf '%s\n' "${missing[@]}" | grep -qx haproxy && command -v service >/dev/null; then
    service haproxy stop >/dev/null 2>&1 || true
  fi
fi

# bpffs: pins live under /sys/fs/bpf/meshbpf
if ! mountpoint -q /sys/fs/bpf; then
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi

# cgroup v2 must be mounted somewhere (pure v2 at /sys/fs/cgroup, or hybrid).
if ! grep -q ' - cgroup2 ' /proc/self/mountinfo; then
  mkdir -p /sys/fs/cgroup/unified
  mount -t cgroup2 none /sys/fs/cgroup/unified
fi

# Node 20+ is not in Debian 12's archive: say so in one line instead of failing in npm.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: meshbpf needs Node 20 or newer (found: $(node --version 2>/dev/null || echo none)); install it, then run this again" >&2
  exit 1
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
echo "setup: done (libbpf $(dpkg-query -W -f='${Version}' libbpf1), clang $(clang --version | head -1 | grep -o '[0-9][0-9.]*' | head -1), kernel $(uname -r))"
