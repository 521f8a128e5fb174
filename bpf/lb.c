/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xlb_xdp: direct-routing load balancing. A frame for a VIP service gets
 * the backend's MAC as destination and goes back out of the interface it
 * came in on; IP and L4 bytes stay as they are, so the real server sees
 * the client's address and answers it directly. Everything else passes to
 * the kernel untouched. */
#include "lb.h"

SEC("xdp")
int xlb_xdp(struct xdp_md *ctx)
{
	return xlb_process(ctx);
}

/* xlb_now returns the low 32 bits of jiffies as its verdict.
 * BPF_PROG_TEST_RUN of it is how the loader reads the program's clock to
 * turn flow atimes into ages; it is never attached. */
SEC("xdp")
int xlb_now(struct xdp_md *ctx)
{
	return (__u32)bpf_jiffies64();
}

char __license[] SEC("license") = "Dual BSD/GPL";
