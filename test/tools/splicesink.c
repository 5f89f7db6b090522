// SPDX-License-Identifier: Apache-2.0
/*
 * splicesink: a TCP receiver that reads with splice(2), socket -> pipe -> file,
 * as Go's io.Copy between two connections, HAProxy and docker-proxy do. For
 * test/kernel/splice.test.ts.
 *
 *   splicesink ADDR PORT OUT [strict]
 *   splicesink connect ADDR PORT OUT [strict]
 *
 * Accepts ONE connection (or, with "connect", makes one: the client side
 * reads) and copies it to OUT until EOF. When splice fails
 * with EINVAL ("this fd cannot splice") it falls back to read(2), as Go does;
 * with "strict" it exits 3 instead. Prints one JSON line:
 *   {"bytes":N,"splice_bytes":S,"read_bytes":R,"splice_errno":E}
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "splicesink: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void write_all(int fd, const char *buf, ssize_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, (size_t)n);

		if (w < 0)
			die("write");
		buf += w;
		n -= w;
	}
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
	long long spliced = 0, readn = 0;
	int one = 1, p[2], ls, s, out, err = 0, strict, client;
	struct addrinfo *ai;
	static char buf[1 << 16];

	client = argc > 1 && !strcmp(argv[1], "connect");
	argv += client;
	argc -= client;
	if (argc < 4) {
		fprintf(stderr, "usage: splicesink [connect] ADDR PORT OUT [strict]\n");
		return 2;
	}
	strict = argc > 4 && !strcmp(argv[4], "strict");
	if (getaddrinfo(argv[1], argv[2], &hints, &ai))
		die("getaddrinfo");
	ls = socket(ai->ai_family, SOCK_STREAM, 0);
	if (ls < 0)
		die("socket");
	if (client) {
		if (connect(ls, ai->ai_addr, ai->ai_addrlen))
			die("connect");
		s = ls;
	} else {
		setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(ls, ai->ai_addr, ai->ai_addrlen) || listen(ls, 1))
			die("bind/listen");
		s = accept(ls, NULL, NULL);
		if (s < 0)
			die("accept");
	}
	out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (out < 0 || pipe(p))
		die("open/pipe");

	for (;;) {
		ssize_t n = splice(s, NULL, p[1], NULL, sizeof(buf), SPLICE_F_MOVE);

		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			break;
		}
		spliced += n;
		while (n > 0) {
			ssize_t m = splice(p[0], NULL, out, NULL, (size_t)n, SPLICE_F_MOVE);

			if (m <= 0)
				die("splice pipe -> file");
			n -= m;
		}
	}
	if (err && (err != EINVAL || strict)) {
		printf("{\"bytes\":%lld,\"splice_bytes\":%lld,\"read_bytes\":0,\"splice_errno\":%d}\n", spliced, spliced, err);
		return 3;
	}
	if (err) { /* EINVAL: fall back to read(2) */
		for (;;) {
			ssize_t n = read(s, buf, sizeof(buf));

			if (n == 0)
				break;
			if (n < 0) {
				if (errno == EINTR)
					continue;
				die("read");
			}
			readn += n;
			write_all(out, buf, n);
		}
	}
	printf("{\"bytes\":%lld,\"splice_bytes\":%lld,\"read_bytes\":%lld,\"splice_errno\":%d}\n", spliced + readn, spliced, readn, err);
	return 0;
}
