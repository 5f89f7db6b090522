// SPDX-License-Identifier: Apache-2.0
/*
 * mbrr: a tiny TCP request/response tool for the benchmark, for what the Debian
 * peers cannot do here: sockperf 3.7 has no IPv6, netperf (TCP_RR / TCP_CRR) is
 * not in Debian main. C, not Node, so the tool adds no latency of its own.
 *
 *   mbrr server ADDR PORT rr|crr   echo server; crr: one request, reply, close
 *   mbrr rr  ADDR PORT SIZE SECS   one connection, SIZE-byte ping-pong; JSON
 *                                  {count, p50_us, p99_us, mean_us}
 *   mbrr crr ADDR PORT SECS        connect, 1-byte request, 1-byte reply, close,
 *                                  repeated; JSON {connections, per_sec, errors}
 *   mbrr sink ADDR PORT            accept ONE connection, read to EOF; JSON
 *                                  {bytes, seconds, bits_per_second} (receiver side)
 *   mbrr stream ADDR PORT SIZE SECS  SIZE-byte writes for SECS, then close
 *   mbrr unix SIZE SECS            the same stream over an AF_UNIX socketpair
 *                                  (writer and reader processes); JSON as sink:
 *                                  the kernel's same-node limit for a byte stream
 *
 * In crr the server closes first, so TIME_WAIT lands on the server side and
 * the client never runs out of ephemeral ports.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "mbrr: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct addrinfo *resolve(const char *addr, const char *port, int passive)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) };
	struct addrinfo *ai;
	int rc = getaddrinfo(addr, port, &hints, &ai);

	if (rc) {
		fprintf(stderr, "mbrr: bad address %s port %s: %s\n", addr, port, gai_strerror(rc));
		exit(2);
	}
	return ai;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int full_io(int fd, char *buf, size_t n, int wr)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = wr ? write(fd, buf + done, n - done) : read(fd, buf + done, n - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

static _Noreturn void serve(const char *addr, const char *port, int crr)
{
	struct addrinfo *ai = resolve(addr, port, 1);
	int one = 1, ls = socket(ai->ai_family, SOCK_STREAM, 0);
	static char buf[1 << 20];

	if (ls < 0)
		die("socket");
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(ls, ai->ai_addr, ai->ai_addrlen) < 0)
		die("bind");
	if (listen(ls, 1024) < 0)
		die("listen");
	freeaddrinfo(ai);
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		int c = accept(ls, NULL, NULL);
		ssize_t n;

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		nodelay(c);
		while ((n = read(c, buf, sizeof(buf))) > 0) {
			if (full_io(c, buf, (size_t)n, 1) < 0)
				break;
			if (crr)
				break; /* one request per connection; we close first */
		}
		close(c);
	}
}

static int connect_to(struct addrinfo *ai)
{
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		close(fd);
		return -1;
	}
	nodelay(fd);
	return fd;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int rr(const char *addr, const char *port, size_t size, double secs)
{
	struct addrinfo *ai = resolve(addr, port, 0);
	int fd = connect_to(ai);
	char *buf = calloc(1, size);
	size_t cap = 1 << 16, count = 0;
	uint32_t *lat = malloc(cap * sizeof(*lat));
	uint64_t end, t0, sum = 0;

	if (fd < 0)
		die("connect");
	if (!buf || !lat)
		die("malloc");
	/* warm up: caches, the peer's first wakeups */
	for (int i = 0; i < 200; i++)
		if (full_io(fd, buf, size, 1) < 0 || full_io(fd, buf, size, 0) < 0)
			die("warmup");
	end = now_ns() + (uint64_t)(secs * 1e9);
	while ((t0 = now_ns()) < end) {
		if (full_io(fd, buf, size, 1) < 0 || full_io(fd, buf, size, 0) < 0)
			die("ping-pong");
		uint64_t d = now_ns() - t0;
		if (count == cap) {
			cap *= 2;
			lat = realloc(lat, cap * sizeof(*lat));
			if (!lat)
				die("realloc");
		}
		lat[count++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
		sum += d;
	}
	close(fd);
	if (!count) {
		fprintf(stderr, "mbrr: no round trips\n");
		return 1;
	}
	qsort(lat, count, sizeof(*lat), cmp_u32);
	printf("{\"count\":%zu,\"p50_us\":%.3f,\"p99_us\":%.3f,\"mean_us\":%.3f}\n", count, lat[count / 2] / 1e3,
	       lat[(size_t)((double)count * 0.99)] / 1e3, (double)sum / (double)count / 1e3);
	return 0;
}

static int crr(const char *addr, const char *port, double secs)
{
	struct addrinfo *ai = resolve(addr, port, 0);
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), t;
	size_t ok = 0, errors = 0;
	char b = 'x';

	while ((t = now_ns()) < end) {
		int fd = connect_to(ai);

		if (fd < 0) {
			errors++;
			continue;
		}
		if (full_io(fd, &b, 1, 1) == 0 && full_io(fd, &b, 1, 0) == 0 && read(fd, &b, 1) == 0)
			ok++; /* request, reply, then the server's FIN */
		else
			errors++;
		close(fd);
	}
	printf("{\"connections\":%zu,\"per_sec\":%.1f,\"errors\":%zu}\n", ok, (double)ok / ((double)(t - start) / 1e9), errors);
	return 0;
}

static int sink(const char *addr, const char *port)
{
	struct addrinfo *ai = resolve(addr, port, 1);
	int one = 1, ls = socket(ai->ai_family, SOCK_STREAM, 0), c;
	static char buf[1 << 20];
	uint64_t bytes = 0, t0 = 0, t1 = 0;
	ssize_t n;

	if (ls < 0)
		die("socket");
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(ls, ai->ai_addr, ai->ai_addrlen) < 0)
		die("bind");
	if (listen(ls, 8) < 0)
		die("listen");
	c = accept(ls, NULL, NULL);
	if (c < 0)
		die("accept");
	while ((n = read(c, buf, sizeof(buf))) > 0) {
		if (!t0)
			t0 = now_ns();
		bytes += (uint64_t)n;
		t1 = now_ns();
	}
	double secs = t1 > t0 ? (double)(t1 - t0) / 1e9 : 0;
	printf("{\"bytes\":%llu,\"seconds\":%.6f,\"bits_per_second\":%.1f}\n", (unsigned long long)bytes, secs, secs > 0 ? (double)bytes * 8 / secs : 0);
	return 0;
}

static int stream(const char *addr, const char *port, size_t size, double secs)
{
	struct addrinfo *ai = resolve(addr, port, 0);
	int fd = connect_to(ai);
	char *buf = calloc(1, size);
	uint64_t end;

	if (fd < 0)
		die("connect");
	if (!buf)
		die("malloc");
	{
		int zero = 0; /* default Nagle, like iperf3 */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof(zero));
	}
	end = now_ns() + (uint64_t)(secs * 1e9);
	while (now_ns() < end)
		if (full_io(fd, buf, size, 1) < 0)
			die("write");
	close(fd);
	return 0;
}

static int unix_stream(size_t size, double secs)
{
	int sv[2];
	char *buf = calloc(1, size);
	pid_t pid;

	if (!buf)
		die("malloc");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) { /* the writer, like stream() */
		uint64_t end = now_ns() + (uint64_t)(secs * 1e9);

		close(sv[0]);
		while (now_ns() < end)
			if (full_io(sv[1], buf, size, 1) < 0)
				die("write");
		close(sv[1]);
		_exit(0);
	}
	close(sv[1]);
	{ /* the reader, like sink() */
		static char rbuf[1 << 20];
		uint64_t bytes = 0, t0 = 0, t1 = 0;
		ssize_t n;

		while ((n = read(sv[0], rbuf, sizeof(rbuf))) > 0) {
			if (!t0)
				t0 = now_ns();
			bytes += (uint64_t)n;
			t1 = now_ns();
		}
		waitpid(pid, NULL, 0);
		double s = t1 > t0 ? (double)(t1 - t0) / 1e9 : 0;
		printf("{\"bytes\":%llu,\"seconds\":%.6f,\"bits_per_second\":%.1f}\n", (unsigned long long)bytes, s, s > 0 ? (double)bytes * 8 / s : 0);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "unix"))
		return unix_stream((size_t)atol(argv[2]), atof(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "sink"))
		return sink(argv[2], argv[3]);
	if (argc == 6 && !strcmp(argv[1], "stream"))
		return stream(argv[2], argv[3], (size_t)atol(argv[4]), atof(argv[5]));
	if (argc == 5 && !strcmp(argv[1], "server"))
		serve(argv[2], argv[3], !strcmp(argv[4], "crr"));
	if (argc == 6 && !strcmp(argv[1], "rr"))
		return rr(argv[2], argv[3], (size_t)atol(argv[4]), atof(argv[5]));
	if (argc == 5 && !strcmp(argv[1], "crr"))
		return crr(argv[2], argv[3], atof(argv[4]));
	fprintf(stderr, "usage: mbrr server ADDR PORT rr|crr | mbrr rr ADDR PORT SIZE SECS | mbrr crr ADDR PORT SECS\n");
	return 2;
}
