// SPDX-License-Identifier: Apache-2.0
/*
 * sizedsend: send a file over TCP with write(2) calls of chosen sizes, for the
 * kernel tests of bpf/sk_msg.c's stream switch (socat picks its own sizes).
 *
 *   sizedsend ADDR PORT FILE PLAN
 *   sizedsend ADDR PORT FILE rrSIZE   request/response: send SIZE bytes, read
 *                                     the echo (SIZE bytes) and compare, repeat
 *
 * PLAN is SIZE[xCOUNT],...: COUNT writes of SIZE bytes per phase; the last
 * phase repeats until the file is sent. The connection is made first; the
 * sending starts when a line arrives on stdin (so the test can wait until
 * sockops has seen both ends). Default Nagle, like iperf3. Prints the bytes
 * and writes made as JSON (rr: and how many echoes differed from the request).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "sizedsend: %s: %s\n", what, strerror(errno));
	exit(1);
}

struct phase {
	size_t size, count; /* count 0: until the end */
};

int main(int argc, char **argv)
{
	struct phase plan[16];
	int nplan = 0;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	struct stat st;
	char *data, *p, line[16];
	size_t off = 0, writes = 0;
	int fd, in;

	if (argc != 5) {
		fprintf(stderr, "usage: sizedsend ADDR PORT FILE SIZE[xCOUNT],...\n");
		return 2;
	}
	size_t rr = !strncmp(argv[4], "rr", 2) ? strtoul(argv[4] + 2, NULL, 10) : 0, bad = 0;

	for (p = strtok(argv[4] + (rr ? 2 : 0), ","); p && nplan < 16; p = strtok(NULL, ",")) {
		char *x = strchr(p, 'x');
		plan[nplan].size = strtoul(p, NULL, 10);
		plan[nplan].count = x ? strtoul(x + 1, NULL, 10) : 0;
		if (!plan[nplan].size)
			return 2;
		nplan++;
	}
	if (!nplan)
		return 2;
	plan[nplan - 1].count = 0;
	in = open(argv[3], O_RDONLY);
	if (in < 0 || fstat(in, &st) < 0)
		die("open");
	data = malloc(st.st_size ? st.st_size : 1);
	if (!data)
		die("malloc");
	for (off = 0; off < (size_t)st.st_size;) {
		ssize_t n = read(in, data + off, st.st_size - off);
		if (n <= 0)
			die("read");
		off += n;
	}
	if (getaddrinfo(argv[1], argv[2], &hints, &ai))
		die("getaddrinfo");
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("connect");
	if (!fgets(line, sizeof(line), stdin))
		die("stdin");
	off = 0;
	if (rr) {
		char *echo = malloc(rr);

		if (!echo)
			die("malloc");
		while (off < (size_t)st.st_size) {
			size_t want = rr < st.st_size - off ? rr : st.st_size - off, got = 0;

			for (size_t w = 0; w < want;) {
				ssize_t n = write(fd, data + off + w, want - w);
				if (n < 0)
					die("write");
				w += n;
				writes++;
			}
			while (got < want) {
				ssize_t n = read(fd, echo + got, want - got);
				if (n <= 0)
					die("read echo");
				got += n;
			}
			bad += memcmp(echo, data + off, want) != 0;
			off += want;
		}
		shutdown(fd, SHUT_WR);
		while (read(fd, line, sizeof(line)) > 0)
			;
		close(fd);
		printf("{\"bytes\":%zu,\"writes\":%zu,\"mismatches\":%zu}\n", off, writes, bad);
		return 0;
	}
	for (int i = 0; i < nplan && off < (size_t)st.st_size; i++) {
		for (size_t k = 0; (!plan[i].count || k < plan[i].count) && off < (size_t)st.st_size; k++) {
			size_t want = plan[i].size < st.st_size - off ? plan[i].size : st.st_size - off;
			ssize_t n = write(fd, data + off, want);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				die("write");
			}
			off += n;
			writes++;
		}
	}
	if (close(fd) < 0)
		die("close");
	printf("{\"bytes\":%zu,\"writes\":%zu}\n", off, writes);
	return 0;
}
