/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* bench_unwrap lets BPF_PROG_TEST_RUN repeat a tunnelled known flow. The
 * test run does not reset the frame between repeats, and xlb_xdp puts the
 * outer header in front of the IP packet it got (bpf_xdp_adjust_head),
 * leaving the packet's bytes as they were: moving the start back by what
 * the frame grew and writing the Ethernet header again (the outer header
 * covered it) restores the frame exactly. Then it tail-calls the program under
 * test (slot 0 of bench_progs). A direct-routing run does not grow the
 * frame and costs the wrapper one map lookup: the benchmark runs both
 * paths through it, so their ratio carries its cost on both sides, and
 * the tunnel side also the head move back, which makes it look dearer
 * than it is, never cheaper. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

/* The frame as the benchmark hands it over: its length and its untagged
 * Ethernet header. */
struct bench_frame {
	__u32 len;
	__u8 eth[ETH_HLEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_frame);
} bench_frames SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_progs SEC(".maps");

SEC("xdp")
int bench_unwrap(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct bench_frame *want = bpf_map_lookup_elem(&bench_frames, &zero);
	void *data, *data_end;
	int grown;

	if (!want)
		return XDP_ABORTED;
	/* The helper, not data_end - data: clang does that subtraction in
	 * 32 bits, which the verifier refuses on packet pointers. */
	grown = (int)bpf_xdp_get_buff_len(ctx) - (int)want->len;
	if (grown > 0) {
		if (bpf_xdp_adjust_head(ctx, grown))
			return XDP_ABORTED;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		if (data + ETH_HLEN > data_end)
			return XDP_ABORTED;
		__builtin_memcpy(data, want->eth, ETH_HLEN);
	}
	bpf_tail_call(ctx, &bench_progs, 0);
	/* Only reached when the slot is empty or the call is refused. */
	return XDP_ABORTED;
}

char __license[] SEC("license") = "Dual BSD/GPL";
