#!/usr/bin/env python3
"""Two HTTP clients bound to one local address:port (SO_REUSEADDR) that POST to
two destinations at once: the case where NAT must remap the second client's
port on the wire and a pairing by client address alone would guess wrong.
Prints one JSON line per request: {"port", "sent", "response"}."""
import hashlib
import json
import os
import socket
import sys

src_ip, src_port, dst_ip = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ports = [int(p) for p in sys.argv[4].split(",")]
size = int(sys.argv[5])
fam = socket.AF_INET6 if ":" in dst_ip else socket.AF_INET
socks = []
for p in ports:
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src_ip, src_port))
    s.connect((dst_ip, p))
    socks.append((p, s))
out = []
for p, s in socks:
    body = os.urandom(size)
    host = f"[{dst_ip}]" if fam == socket.AF_INET6 else dst_ip
    s.sendall(f"POST / HTTP/1.1\r\nhost: {host}:{p}\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n".encode() + body)
    out.append((p, hashlib.sha256(body).hexdigest(), s))
for p, sent, s in out:
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    head, _, resp = data.partition(b"\r\n\r\n")
    print(json.dumps({"port": p, "sent": sent, "status": head.split(b" ")[1].decode() if head else "", "response": json.loads(resp or b"{}")}))
