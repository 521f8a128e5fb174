/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* bench_wrapper makes every run of BPF_PROG_TEST_RUN a new flow, then
 * tail-calls the program under test (slot 0 of bench_progs, set by the
 * benchmark to xlb_xdp or bench_bare). The test run does not reset the
 * frame between repeats, so without it every SYN after the first would
 * hit the entry the first one inserted.
 *
 * The 32-bit run counter goes into the source port (low half) and the low
 * half of the source address (high half, IPv4) or the last 16 bits of the
 * source address (IPv6): 2^32 distinct tuples, where the port alone would
 * repeat after 65536 runs. Checksums go stale; neither program checks
 * them. Its cost is measured around bench_bare and subtracted. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* A shared array, not per-CPU: a test run may migrate between CPUs when it
 * reschedules, and two per-CPU counters would hand out the same values.
 * Only one test run uses it at a time, so the increment needs no atomic. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_runs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_progs SEC(".maps");

SEC("xdp")
int bench_wrapper(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__u16 *src_low, *port;
	__u32 zero = 0, *runs, n;

	if (l3 > data_end)
		return XDP_ABORTED;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = l3;

		if ((void *)(iph + 1) > data_end || iph->ihl < 5)
			return XDP_ABORTED;
		src_low = (__u16 *)&iph->saddr + 1;
		port = (void *)iph + iph->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = l3;

		if ((void *)(ip6h + 1) > data_end)
			return XDP_ABORTED;
		src_low = (__u16 *)&ip6h->saddr + 7;
		port = (void *)(ip6h + 1);
	} else {
		return XDP_ABORTED;
	}
	if ((void *)(port + 1) > data_end)
		return XDP_ABORTED;

	runs = bpf_map_lookup_elem(&bench_runs, &zero);
	if (!runs)
		return XDP_ABORTED;
	n = ++*runs;
	*port = (__u16)n;
	*src_low = (__u16)(n >> 16);

	bpf_tail_call(ctx, &bench_progs, 0);
	/* Only reached when the slot is empty or the call is refused. */
	return XDP_ABORTED;
}

char __license[] SEC("license") = "Dual BSD/GPL";
