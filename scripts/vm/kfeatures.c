// SPDX-License-Identifier: Apache-2.0
/*
 * kfeatures: ask the running kernel, by trying each one, for the BPF features meshbpf
 * uses. Prints "feature: yes|no (errno)" lines. It is the reference for the loader's
 * runtime probes and the evidence behind the README's kernel table.
 *
 *   cc -O2 -Wall -o /tmp/kfeatures scripts/vm/kfeatures.c -lbpf && /tmp/kfeatures [CGROUP2_DIR]
 *
 * It makes a child cgroup "mbt-kf-<pid>" under the cgroup v2 mount it is given (default
 * /sys/fs/cgroup) and removes it; every map, program and link dies with the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static int show(const char *what, int ok, int err)
{
	if (ok)
		printf("%-52s yes\n", what);
	else
		printf("%-52s no (%s)\n", what, strerror(err));
	return ok;
}

/* r0 = 1; exit  (sockops: continue; sk_msg: SK_PASS) */
static const struct bpf_insn ret1[] = {
	{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1 },
	{ .code = BPF_JMP | BPF_EXIT },
};

static int load(enum bpf_prog_type t, enum bpf_attach_type exp)
{
	LIBBPF_OPTS(bpf_prog_load_opts, o, .expected_attach_type = exp);
	return bpf_prog_load(t, "mbt_kf", "GPL", ret1, 2, &o);
}

/*
 * Helper probe that does not trust libbpf_probe_bpf_helper(): libbpf 1.1 (Debian 12)
 * only knows the old verifier wording ("unknown func"); kernels >= ~6.4 say "program of
 * this type cannot use helper", so libbpf 1.1 reports every helper as supported there.
 * Load "call H; r0 = 1; exit" with r1 = ctx: accepted means yes for helpers whose only
 * argument is the ctx (bpf_get_netns_cookie); otherwise read the verifier log.
 */
static void helper(enum bpf_prog_type t, const char *tn, enum bpf_func_id id, const char *hn)
{
	struct bpf_insn p[] = {
		{ .code = BPF_JMP | BPF_CALL, .imm = id },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	static char log[16384];
	LIBBPF_OPTS(bpf_prog_load_opts, o, .log_buf = log, .log_size = sizeof(log), .log_level = 1);
	char what[128];
	int fd, lib;

	log[0] = 0;
	fd = bpf_prog_load(t, "mbt_kf", "GPL", p, 3, &o);
	lib = libbpf_probe_bpf_helper(t, id, NULL);
	snprintf(what, sizeof(what), "helper %s in %s", hn, tn);
	if (fd >= 0) {
		printf("%-52s yes (loads) [libbpf probe: %d]\n", what, lib);
		close(fd);
	} else if (strstr(log, "unknown func") || strstr(log, "invalid func") || strstr(log, "cannot use helper")) {
		printf("%-52s no (verifier: not allowed) [libbpf probe: %d]\n", what, lib);
	} else {
		printf("%-52s yes (known; this probe's args rejected) [libbpf probe: %d]\n", what, lib);
	}
}

static void batch(enum bpf_map_type t, const char *tn, __u32 ksz, __u32 vsz, __u32 flags)
{
	LIBBPF_OPTS(bpf_map_create_opts, mo, .map_flags = flags);
	char what[96], keys[4 * 64] = { 0 }, vals[4 * 64] = { 0 }, out_k[4 * 64], out_v[4 * 64 * 2];
	__u32 n = 4, batch_out = 0;
	int fd, r, i;

	fd = bpf_map_create(t, "mbt_kf", ksz, vsz, 16, &mo);
	snprintf(what, sizeof(what), "map %s", tn);
	if (!show(what, fd >= 0, errno))
		return;
	for (i = 0; i < 4; i++) {
		if (t == BPF_MAP_TYPE_LPM_TRIE) {
			*(__u32 *)(keys + i * ksz) = 128; /* prefixlen */
			keys[i * ksz + 4 + 15] = (char)i;
		} else if (t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_ARRAY) {
			*(__u32 *)(keys + i * ksz) = i;
		} else {
			keys[i * ksz] = (char)(i + 1);
		}
	}
	r = bpf_map_update_batch(fd, keys, vals, &n, NULL);
	snprintf(what, sizeof(what), "  %s BPF_MAP_UPDATE_BATCH", tn);
	show(what, r == 0, errno);
	n = 4;
	r = bpf_map_lookup_batch(fd, NULL, &batch_out, out_k, out_v, &n, NULL);
	snprintf(what, sizeof(what), "  %s BPF_MAP_LOOKUP_BATCH", tn);
	show(what, r == 0 || errno == ENOENT, errno);
	if (t != BPF_MAP_TYPE_PERCPU_ARRAY) {
		n = 4;
		r = bpf_map_delete_batch(fd, keys, &n, NULL);
		snprintf(what, sizeof(what), "  %s BPF_MAP_DELETE_BATCH", tn);
		/* ENOENT: the update failed, so nothing to delete, but the op exists. */
		show(what, r == 0 || errno == ENOENT, errno);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	const char *cgroot = argc > 1 ? argv[1] : "/sys/fs/cgroup";
	char cg[512];
	int sockops, skmsg, cgfd = -1, sh, lfd, r;

	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	printf("# prog and map types\n");
	show("prog type sock_ops", libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, NULL) == 1, ENOTSUP);
	show("prog type sk_msg", libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_MSG, NULL) == 1, ENOTSUP);
	show("map SOCKHASH", libbpf_probe_bpf_map_type(BPF_MAP_TYPE_SOCKHASH, NULL) == 1, ENOTSUP);
	show("kernel BTF (/sys/kernel/btf/vmlinux)", access("/sys/kernel/btf/vmlinux", R_OK) == 0, errno);

	printf("# helpers\n");
	helper(BPF_PROG_TYPE_SOCK_OPS, "sock_ops", BPF_FUNC_sock_hash_update, "bpf_sock_hash_update");
	helper(BPF_PROG_TYPE_SOCK_OPS, "sock_ops", BPF_FUNC_get_netns_cookie, "bpf_get_netns_cookie");
	helper(BPF_PROG_TYPE_SK_MSG, "sk_msg", BPF_FUNC_msg_redirect_hash, "bpf_msg_redirect_hash");
	helper(BPF_PROG_TYPE_SK_MSG, "sk_msg", BPF_FUNC_get_netns_cookie, "bpf_get_netns_cookie");
	/* Negative control: msg_redirect_hash is sk_msg-only. A "yes" here means this
	 * kernel/libbpf pair cannot tell helpers apart by probing (see README). */
	helper(BPF_PROG_TYPE_SOCK_OPS, "sock_ops (control: expect no)", BPF_FUNC_msg_redirect_hash, "bpf_msg_redirect_hash");

	printf("# map batch operations\n");
	batch(BPF_MAP_TYPE_HASH, "HASH", 20, 8, 0);
	batch(BPF_MAP_TYPE_LPM_TRIE, "LPM_TRIE", 20, 16, BPF_F_NO_PREALLOC);
	batch(BPF_MAP_TYPE_PERCPU_ARRAY, "PERCPU_ARRAY", 4, 8, 0);

	printf("# attachment\n");
	sockops = load(BPF_PROG_TYPE_SOCK_OPS, 0);
	show("load sock_ops program", sockops >= 0, errno);
	skmsg = load(BPF_PROG_TYPE_SK_MSG, BPF_SK_MSG_VERDICT);
	show("load sk_msg program", skmsg >= 0, errno);

	snprintf(cg, sizeof(cg), "%s/mbt-kf-%d", cgroot, getpid());
	if (mkdir(cg, 0755) == 0)
		cgfd = open(cg, O_RDONLY | O_DIRECTORY);
	if (show("child cgroup v2 for the attach tests", cgfd >= 0, errno) && sockops >= 0) {
		lfd = bpf_link_create(sockops, cgfd, BPF_CGROUP_SOCK_OPS, NULL);
		if (show("bpf_link_create cgroup sock_ops (BPF_LINK_CREATE)", lfd >= 0, errno)) {
			struct bpf_link_info info = { 0 };
			__u32 len = sizeof(info);

			r = bpf_link_update(lfd, sockops, NULL);
			show("  bpf_link_update (BPF_LINK_UPDATE)", r == 0, errno);
			r = bpf_obj_get_info_by_fd(lfd, &info, &len);
			show("  link info with cgroup id (OBJ_GET_INFO_BY_FD)", r == 0 && info.cgroup.cgroup_id != 0, r ? errno : ENOTSUP);
			r = bpf_link_detach(lfd);
			show("  bpf_link_detach (BPF_LINK_DETACH)", r == 0, errno);
			close(lfd);
		}
		r = bpf_prog_attach(sockops, cgfd, BPF_CGROUP_SOCK_OPS, BPF_F_ALLOW_MULTI);
		show("prog attach cgroup sock_ops BPF_F_ALLOW_MULTI", r == 0, errno);
		if (r == 0)
			bpf_prog_detach2(sockops, cgfd, BPF_CGROUP_SOCK_OPS);
	}
	if (cgfd >= 0)
		close(cgfd);
	rmdir(cg);

	sh = bpf_map_create(BPF_MAP_TYPE_SOCKHASH, "mbt_kf", 48, 8, 16, NULL);
	if (show("create SOCKHASH (48-byte key, 8-byte value)", sh >= 0, errno) && skmsg >= 0) {
		__u32 ids[4], cnt = 4, aflags = 0;

		r = bpf_prog_attach(skmsg, sh, BPF_SK_MSG_VERDICT, 0);
		show("prog attach sk_msg to SOCKHASH (BPF_PROG_ATTACH)", r == 0, errno);
		r = bpf_prog_query(sh, BPF_SK_MSG_VERDICT, 0, &aflags, ids, &cnt);
		show("  query sk_msg on SOCKHASH (BPF_PROG_QUERY on a map)", r == 0 && cnt == 1, r ? errno : ENOENT);
		r = bpf_prog_detach2(skmsg, sh, BPF_SK_MSG_VERDICT);
		show("  detach sk_msg from SOCKHASH (BPF_PROG_DETACH)", r == 0, errno);
		lfd = bpf_link_create(skmsg, sh, BPF_SK_MSG_VERDICT, NULL);
		show("bpf_link_create sk_msg on SOCKHASH (sockmap link)", lfd >= 0, errno);
		if (lfd >= 0)
			close(lfd);
	}
	return 0;
}
