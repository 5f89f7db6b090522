/* Host-side check of the kernel ABI header and the byte-order helpers in
 * bpf/include/ctx.h. Prints facts as JSON for test/unit/abi.test.ts, which
 * compares them with the TypeScript codecs. Built with the host compiler. */
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <arpa/inet.h>
#include "include/ctx.h"

/* What the kernel hands a program for skc_dport = htons(port): the network-
 * order u16 loaded into a u32 and, on little-endian, shifted left by 16. */
static __u32 kernel_remote_port_field(__u16 port)
{
	__u32 v = htons(port);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v <<= 16;
#endif
	return v;
}

int main(void)
{
	__u32 ip[4], lo[4] = { 0, 0, 0, htonl(1) }, v6[4] = { htonl(0xfd000000), 0, 0, htonl(2) };
	unsigned char bytes[16];
	int ok_ports = 1;

	for (__u32 p = 1; p < 65536; p++) {
		if (mb_remote_port_net(kernel_remote_port_field((__u16)p)) != htons((__u16)p)) ok_ports = 0;
		if (mb_local_port_net(p) != htons((__u16)p)) ok_ports = 0;
	}
	mb_ip_from_v4(ip, inet_addr("198.18.1.2"));
	memcpy(bytes, ip, 16);

	printf("{\"sock_key\":%zu,\"sock_key_local_port\":%zu,\"sock_key_remote_port\":%zu,\"sock_key_cookie\":%zu,",
	       sizeof(struct mb_sock_key), offsetof(struct mb_sock_key, local_port),
	       offsetof(struct mb_sock_key, remote_port), offsetof(struct mb_sock_key, netns_cookie));
	printf("\"endpoint_key\":%zu,\"endpoint_value\":%zu,\"policy_key\":%zu,\"policy_key_port\":%zu,\"policy_value\":%zu,",
	       sizeof(struct mb_endpoint_key), sizeof(struct mb_endpoint_value), sizeof(struct mb_policy_key),
	       offsetof(struct mb_policy_key, port), sizeof(struct mb_policy_value));
	printf("\"stat_max\":%d,\"stat_slots\":%d,\"ep_local\":%u,\"ep_mesh\":%u,\"verdict_bypass\":%d,\"verdict_proxy\":%d,",
	       MB_STAT_MAX, MB_STAT_SLOTS, MB_EP_LOCAL, MB_EP_MESH, MB_VERDICT_BYPASS, MB_VERDICT_PROXY);
	printf("\"exclude_value\":%zu,\"exclude_value_comm\":%zu,\"exclude_operator\":%d,\"exclude_splice\":%d,",
	       sizeof(struct mb_exclude_value), offsetof(struct mb_exclude_value, comm), MB_EXCLUDE_OPERATOR, MB_EXCLUDE_SPLICE);
	printf("\"service_value\":%zu,\"backend_key\":%zu,\"backend_value\":%zu,\"backend_value_port\":%zu,\"netns_value\":%zu,\"netns_flags\":%zu,\"svc_bypass\":%u,\"ns_proxy\":%u,",
	       sizeof(struct mb_service_value), sizeof(struct mb_backend_key), sizeof(struct mb_backend_value),
	       offsetof(struct mb_backend_value, port), sizeof(struct mb_netns_value), offsetof(struct mb_netns_value, flags),
	       MB_SVC_BYPASS, MB_NS_PROXY);
	printf("\"stream_key\":%zu,\"stream_key_cookie\":%zu,\"stream_key_port\":%zu,\"stream_value\":%zu,\"stream_value_kept\":%zu,\"stream_learn_ns\":\"%llu\",",
	       sizeof(struct mb_stream_key), offsetof(struct mb_stream_key, netns_cookie), offsetof(struct mb_stream_key, server_port),
	       sizeof(struct mb_stream_value), offsetof(struct mb_stream_value, kept), (unsigned long long)MB_STREAM_LEARN_NS);
	printf("\"ports_ok\":%s,\"v4_mapped\":\"", ok_ports ? "true" : "false");
	for (int i = 0; i < 16; i++) printf("%02x", bytes[i]);
	printf("\",\"loopback_v4\":%d,\"loopback_v6\":%d,\"loopback_other\":%d,\"loopback_pod\":%d}\n",
	       ({ __u32 x[4]; mb_ip_from_v4(x, inet_addr("127.0.0.53")); mb_ip_is_loopback(x); }),
	       mb_ip_is_loopback(lo), mb_ip_is_loopback(v6), mb_ip_is_loopback(ip));
	return 0;
}
