/* Raw libbpf baseline for the sync benchmark: the fastest a program can fill
 * maps shaped like mb_policy (HASH, batch update) and mb_endpoints (LPM trie,
 * no batch op: one bpf_map_update_elem each). Keys are pre-built; only the
 * syscalls are timed. Usage: raw_update N [CAPACITY] -> JSON on stdout. */
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 100000, i;
	/* same capacity as the maps meshbpf writes, so both hash tables have one size */
	unsigned cap = argc > 2 ? (unsigned)atoi(argv[2]) : n;
	unsigned char *pk = calloc(n, 20), *pv = calloc(n, 8), *ek = calloc(n, 20), *ev = calloc(n, 16);
	LIBBPF_OPTS(bpf_map_create_opts, trie_opts, .map_flags = BPF_F_NO_PREALLOC);
	LIBBPF_OPTS(bpf_map_batch_opts, bopts);
	int hash = bpf_map_create(BPF_MAP_TYPE_HASH, "raw_policy", 20, 8, cap, NULL);
	int trie = bpf_map_create(BPF_MAP_TYPE_LPM_TRIE, "raw_endpoints", 20, 16, cap, &trie_opts);
	double t0, hash_ms, trie_ms;
	__u32 count = n, done = 0;

	if (hash < 0 || trie < 0) {
		fprintf(stderr, "raw_update: map create failed\n");
		return 1;
	}
	for (i = 0; i < n; i++) {
		/* ::ffff:10.x.y.z, port 80 / prefixlen 128 */
		unsigned char *k = pk + i * 20, *e = ek + i * 20;
		k[10] = k[11] = 0xff;
		k[12] = 10; k[13] = i >> 16; k[14] = i >> 8; k[15] = i;
		k[16] = 0; k[17] = 80;
		pv[i * 8] = 1;
		*(__u32 *)e = 128;
		memcpy(e + 4, k, 16);
		ev[i * 16] = 1;
	}
	t0 = now_ms();
	while (done < n) {
		count = n - done > 4096 ? 4096 : n - done;
		if (bpf_map_update_batch(hash, pk + done * 20, pv + done * 8, &count, &bopts)) {
			perror("bpf_map_update_batch");
			return 1;
		}
		done += count;
	}
	hash_ms = now_ms() - t0;
	t0 = now_ms();
	for (i = 0; i < n; i++)
		if (bpf_map_update_elem(trie, ek + i * 20, ev + i * 16, BPF_ANY)) {
			perror("bpf_map_update_elem");
			return 1;
		}
	trie_ms = now_ms() - t0;
	printf("{\"n\":%u,\"hash_batch_ms\":%.3f,\"trie_single_ms\":%.3f}\n", n, hash_ms, trie_ms);
	return 0;
}
