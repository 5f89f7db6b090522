#!/usr/bin/env python3
"""A minimal HTTP/1.1 sidecar stand-in for the IPv6 kernel tests.

HAProxy reads the original destination (SO_ORIGINAL_DST) only for IPv4; this
proxy reads IP6T_SO_ORIGINAL_DST (the same option number, 80, at SOL_IPV6) on
each connection Istio's ip6tables rules REDIRECTed to it, connects to that
destination (the inbound leg from ::6, as Envoy's inbound passthrough does)
and relays keep-alive requests with a Content-Length body, adding one header
per request: x-sidecar-out on 15001, x-sidecar-in on 15006. Runs as uid 1337.
"""
import argparse
import socket
import struct
import threading

SO_ORIGINAL_DST = 80  # also IP6T_SO_ORIGINAL_DST
CHUNK = 1 << 16


def original_dst(conn):
    if conn.family == socket.AF_INET6:
        raw = conn.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack("!H", raw[2:4])[0]
    raw = conn.getsockopt(socket.IPPROTO_IP, SO_ORIGINAL_DST, 16)
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack("!H", raw[2:4])[0]


def read_head(sock, buf):
    while b"\r\n\r\n" not in buf:
        d = sock.recv(CHUNK)
        if not d:
            return None, buf
        buf += d
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]


def relay(src, dst, buf, header=None):
    """Forward one message (head + Content-Length body) from src to dst; return leftover bytes, or None at EOF."""
    head, buf = read_head(src, buf)
    if head is None:
        return None
    lines = head[:-4].split(b"\r\n")
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    if header:
        lines.insert(1, header)
    dst.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
    while length > 0:
        if not buf:
            buf = src.recv(CHUNK)
            if not buf:
                raise ConnectionError("peer closed mid-body")
        part, buf = buf[:length], buf[length:]
        dst.sendall(part)
        length -= len(part)
    return buf


def serve(conn, header, source):
    try:
        host, port = original_dst(conn)
        up = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        if source:
            up.bind((source, 0))
        up.connect((host, port))
        cbuf, ubuf = b"", b""
        while True:
            cbuf = relay(conn, up, cbuf, header)
            if cbuf is None:
                break
            ubuf = relay(up, conn, ubuf)
            if ubuf is None:
                break
        up.close()
    except (OSError, ConnectionError, ValueError):
        pass
    finally:
        conn.close()


def listen(port, header, source):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::", port))
    s.listen(512)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, header, source), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pod", required=True)
    a = ap.parse_args()
    threading.Thread(target=listen, args=(15001, b"x-sidecar-out: " + a.pod.encode(), None), daemon=True).start()
    listen(15006, b"x-sidecar-in: " + a.pod.encode(), "::6")


if __name__ == "__main__":
    main()
