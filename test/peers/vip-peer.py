#!/usr/bin/env python3
"""The two ends of the service VIP kernel tests.

serve PORT NAME
    Dual-stack listener on [::]:PORT. Per connection (one thread each): send one byte (the client
    sends only after it: both sockets are then established, so whether the flow
    is redirected never depends on the handshake race), read to EOF, answer
    one JSON line {"server", "bytes", "sha256"}.

connect HOST PORT BYTES COUNT [mapped]
    COUNT connections one after the other, each sending BYTES random bytes.
    HOST with ':' is IPv6; 'mapped' connects an AF_INET6 socket to
    ::ffff:HOST. Prints one JSON line per connection: what getpeername said,
    the server's answer and the sha256 sent.

stream HOST PORT CHUNK
    One connection that sends CHUNK random bytes per line read on stdin and
    finishes at stdin's EOF; prints one JSON line as connect does.
"""
import hashlib
import json
import os
import select
import socket
import sys
import threading


def serve(port, name):
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind(("::", port))
    ls.listen(128)
    while True:
        c, _ = ls.accept()
        # one thread per connection: a long-lived stream must not hold up new ones
        threading.Thread(target=handle, args=(c, name), daemon=True).start()


def handle(c, name):
    c.sendall(b"!")
    h, n = hashlib.sha256(), 0
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        h.update(d)
        n += len(d)
    c.sendall((json.dumps({"server": name, "bytes": n, "sha256": h.hexdigest()}) + "\n").encode())
    c.close()


def open_conn(host, port, mapped):
    if mapped:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.connect(("::ffff:" + host, port))
    elif ":" in host:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.connect((host, port))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect((host, port))
    peer = s.getpeername()
    if s.recv(1) != b"!":
        raise SystemExit("no ready byte from the server")
    return s, {"peer": peer[0], "peerPort": peer[1]}


def recv(s, info):
    # A blocking recv on a socket fed by sk_msg redirects can return EAGAIN
    # when the peer's FIN wakes it before the redirected bytes are read
    # (tcp_bpf_recvmsg); count it and wait again, as socat does.
    while True:
        try:
            return s.recv(4096)
        except BlockingIOError:
            info["eagain"] = info.get("eagain", 0) + 1
            select.select([s], [], [], 1)


def finish(s, info, h):
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        d = recv(s, info)
        if not d:
            break
        data += d
    s.close()
    info["sent"] = h.hexdigest()
    info["reply"] = json.loads(data.decode()) if data else None
    print(json.dumps(info), flush=True)


def main():
    mode = sys.argv[1]
    if mode == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    elif mode == "connect":
        host, port, size, count = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        mapped = len(sys.argv) > 6 and sys.argv[6] == "mapped"
        for _ in range(count):
            s, info = open_conn(host, port, mapped)
            body = os.urandom(size)
            s.sendall(body)
            finish(s, info, hashlib.sha256(body))
    elif mode == "stream":
        host, port, chunk = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        s, info = open_conn(host, port, False)
        print(json.dumps({"ready": True, **info}), flush=True)
        h = hashlib.sha256()
        for _ in sys.stdin:
            body = os.urandom(chunk)
            h.update(body)
            s.sendall(body)
            print(json.dumps({"sentChunk": len(body)}), flush=True)
        finish(s, info, h)
    else:
        raise SystemExit("usage: vip-peer.py serve|connect|stream ...")


if __name__ == "__main__":
    main()
