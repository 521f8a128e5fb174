/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Sizes, flags and counter indices shared by the XDP program and the Go
 * side. What internal/datapath reads is an enum, not a #define: bpf2go
 * -type emits Go for enums in the object's BTF (see xlb_go_consts in
 * lb.c), so the loader has no copy to fall out of step. Changing any value
 * here changes a pinned map's spec: see docs/design.md on re-adopting
 * pins. */
#ifndef XLB_CONSTS_H
#define XLB_CONSTS_H

/* Service ids index the stats map; 0 is never a valid id. */
#define XLB_MAX_SERVICES 4096
/* Twice the services, so every service can have a new Maglev table built
 * in a spare slot while the old one still serves. */
#define XLB_MAX_TABLES (2 * XLB_MAX_SERVICES)
/* Backend ids index the backends array; 0 means "none". */
#define XLB_MAX_BACKENDS 65536
/* Default flow table size, per family; the loader may override
 * max_entries. Probation holds a quarter as many (see lb_maps.h). */
#define XLB_FLOWS_DEFAULT 262144
#define XLB_PROBATION_DEFAULT (XLB_FLOWS_DEFAULT / 4)
/* The inner template's size; real tables are created at their own size
 * (BPF_F_INNER_MAP lets inner maps differ in max_entries). */
#define XLB_MAGLEV_DEFAULT_SIZE 16381
/* Datagrams whose first fragment was seen and whose later ones may still
 * come: a record lives until the LRU evicts it, so the size bounds how
 * many fragmented datagrams can be in flight at once. */
#define XLB_FRAGS_DEFAULT 8192

/* vip_filter: a one-hash Bloom filter of the VIP addresses, 2^16 bits in
 * 64-bit words, so a frame for no VIP is passed after one array load
 * instead of two hash lookups. The multiplier is Knuth's golden ratio. */
enum xlb_vip_filter {
	XLB_VIP_FILTER_BITS = 16,
	XLB_VIP_FILTER_WORDS = (1 << XLB_VIP_FILTER_BITS) / 64,
	XLB_VIP_FILTER_MUL = 0x9E3779B1u,
};

/* Interfaces one xlb serves (xlb run -i), each with its own program. */
#define XLB_MAX_IFACES 64

/* Fixed, not random: two balancers must pick the same backend for the same
 * flow so that a connection survives a failover between them. */
#define XLB_HASH_SEED 0x786c6232u /* "xlb2" */

/* atime unit: 64 jiffies (64 ms at HZ=1000, 256 ms at HZ=250, 640 ms at
 * HZ=100): fine enough for IPVS's shortest timeout (CLOSE, 10 s) and a
 * test's short UDP timeout, coarse enough that a busy flow writes its
 * entry a few times a second rather than on every packet.
 * bpf_jiffies64() is a single load once the verifier inlines it; even the
 * coarse ktime helper is a real call, 13-18 ns on this VM. A 32-bit stamp
 * wraps after 2^32 units (8.7 years at HZ=1000). */
enum xlb_atime {
	XLB_ATIME_SHIFT = 6,
};

/* vip_key.family, flow_key.family */
enum xlb_family {
	XLB_AF_INET = 4,
	XLB_AF_INET6 = 6,
};

/* vip_meta.flags */
enum xlb_svc_flags {
	XLB_SVC_F_HASH_SRC = 1u << 0, /* hash on the source address only (sh, persistence) */
};

/* backend.flags */
enum xlb_be_flags {
	XLB_BE_F_PRESENT = 1u << 0,  /* id is in use: known flows stay on it */
	XLB_BE_F_TUN_IPIP = 1u << 1, /* tunnel: IP in IP (IPv4 in IPv4, IPv6 in IPv6) */
	XLB_BE_F_TUN_GUE = 1u << 2,  /* tunnel: outer IP, UDP to port, GUE header */
	XLB_BE_F_GUE_CSUM = 1u << 3, /* GUE: fill the outer UDP checksum */
};

/* flow.state: the input-only TCP view IPVS keeps in direct routing, where
 * the balancer never sees the server's replies. */
enum xlb_flow_state {
	XLB_FLOW_SYN = 1,   /* first packet was a SYN */
	XLB_FLOW_EST = 2,   /* a packet without SYN/FIN/RST was seen */
	XLB_FLOW_FIN = 3,   /* FIN seen */
	XLB_FLOW_CLOSE = 4, /* RST seen */
	XLB_FLOW_UDP = 5,   /* UDP has no state */
	XLB_FLOW_STATES = 8, /* size of xlb_settings.timeout: a power of two to mask with */
};

/* Global per-CPU counters: why a packet was passed, and flow-table events.
 * Forwarded packets are counted per service and backend in stats. */
enum xlb_counter {
	XLB_CNT_PASS_NOT_IP,     /* ARP, LLDP, anything not IPv4/IPv6 */
	XLB_CNT_PASS_MALFORMED,  /* truncated or inconsistent headers */
	XLB_CNT_PASS_FRAGMENT,   /* IPv6 extension header the program does not follow */
	XLB_CNT_PASS_NOT_L4,     /* ICMP, VRRP, other IP protocols */
	XLB_CNT_PASS_NOT_VIP,    /* no service for this address/port */
	XLB_CNT_PASS_NO_BACKEND, /* service has no table or an empty slot */
	XLB_CNT_FLOW_NEW,        /* new flows: probation inserts and entries rewritten */
	XLB_CNT_FLOW_REHASH,     /* known flow whose backend was removed or is another service's */
	XLB_CNT_PASS_OTHER_HOST, /* VIP traffic sent to another host's MAC */
	XLB_CNT_FLOW_EXPIRED,    /* entry idle past its state's timeout: scheduled afresh */
	XLB_CNT_FLOW_PROMOTED,   /* flow moved from probation to the flow table */
	XLB_CNT_PROMOTE_FULL,    /* flow that lasted, kept in probation: the flow table is full */
	XLB_CNT_TUN_NO_ROUTE,    /* tunnel backend: no route to it */
	XLB_CNT_TUN_NO_NEIGH,    /* tunnel backend: the next hop's MAC is not resolved yet */
	XLB_CNT_TUN_TOO_BIG,     /* tunnel backend: too big once encapsulated, and no ICMP error can say so */
	XLB_CNT_TUN_FWD_OFF,     /* tunnel backend: forwarding is off on the interface, so the FIB will not route */
	XLB_CNT_TUN_TOO_BIG_SENT, /* tunnel backend: too big once encapsulated, answered with an ICMP error */
	/* ICMP error to a VIP quoting a flow that is unknown, expired or
	 * without its backend, or a packet from another address */
	XLB_CNT_PASS_ICMP_NO_FLOW,
	/* later fragment of a VIP datagram whose first was not seen */
	XLB_CNT_PASS_FRAG_NO_FIRST,
	/* ICMP error sent to the real server of the flow it quotes */
	XLB_CNT_FLOW_ICMP_RELAYED,
	XLB_CNT_PASS_VLAN,       /* VIP traffic on a VLAN its service is not limited to */
	XLB_CNT_PASS_NO_TX_PORT, /* the backend's interface is not one the program serves */
	XLB_CNT_MAX,
};

#endif
