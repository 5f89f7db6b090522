#!/usr/bin/env python3
"""A ztunnel stand-in for kernel tests, run inside a pod's network namespace
next to istio-cni's in-pod rules: listens on 15001 (outbound capture) and 15006
(inbound capture), IPv4 and IPv6, logs one line "PORT ORIGINAL-DST" per
connection it accepts to LOGFILE (IPv6 as [ip]:port), and forwards bytes to the
original destination (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST) from a socket
marked 0x539, as ztunnel does, so its own traffic is not captured again.
Usage: ztunnel-standin.py LOGFILE"""
import socket
import struct
import sys
import threading

SO_ORIGINAL_DST = 80
SO_MARK = 36
MARK = 0x539
log = open(sys.argv[1], "a", buffering=1)
lock = threading.Lock()


def pipe(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def handle(conn, port, fam):
    if fam == socket.AF_INET:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        dport, = struct.unpack_from("!H", raw, 2)
        dip = socket.inet_ntoa(raw[4:8])
        shown = f"{dip}:{dport}"
    else:
        raw = conn.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
        dport, = struct.unpack_from("!H", raw, 2)
        dip = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        shown = f"[{dip}]:{dport}"
    with lock:
        log.write(f"{port} {shown}\n")
    up = socket.socket(fam, socket.SOCK_STREAM)
    up.setsockopt(socket.SOL_SOCKET, SO_MARK, MARK)
    up.connect((dip, dport))
    t = threading.Thread(target=pipe, args=(up, conn), daemon=True)
    t.start()
    pipe(conn, up)
    t.join()
    conn.close()
    up.close()


def serve(port, fam):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("0.0.0.0" if fam == socket.AF_INET else "::", port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c, port, fam), daemon=True).start()


for p in (15001, 15006):
    for fam in (socket.AF_INET, socket.AF_INET6):
        threading.Thread(target=serve, args=(p, fam), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
