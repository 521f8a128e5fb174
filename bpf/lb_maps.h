/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every map is pinned by name, so a restarted daemon and bpftool see the
 * same objects (internal/datapath passes the pin directory). */
#ifndef XLB_MAPS_H
#define XLB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_consts.h"
#include "lb_structs.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

/* The template of every Maglev table. BPF_F_INNER_MAP lets tables of
 * other sizes be stored in the outer map. BPF_F_MMAPABLE lets the loader
 * fill a new table with one copy instead of a syscall element per slot
 * (16381 slots: 3.4 ms by batch update, tens of microseconds by mmap); the
 * outer map checks inner flags, so the template carries it too. */
struct maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAGLEV_DEFAULT_SIZE);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, XLB_MAX_TABLES);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct maglev_table); /* must be last: a flexible array */
} maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

/* The VLAN id a service is limited to, by service id; 0 = any. Apart
 * from services because a known flow, which never reads services, must be
 * held to it too: an array lookup is inlined, a hash lookup is a call. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} svc_vlan SEC(".maps");

/* The interfaces a frame may leave by XDP_REDIRECT, keyed by ifindex (a
 * hash devmap: ifindexes are sparse), and the MAC each one writes as the
 * source. Every interface xlb runs on is in both, tx_ports first, so a
 * frame that finds its interface in ifaces finds it in tx_ports too. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, XLB_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct xlb_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ifaces SEC(".maps");

/* Bit h(dst) is set for every VIP address (see enum xlb_vip_filter);
 * Apply sets a service's bit before the service and clears it after. An
 * array lookup is inlined by the verifier: no call. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_VIP_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vip_filter SEC(".maps");

/* The flow table is segmented, so that no flood can flush it. A new flow
 * goes into probation, an LRU: a flood of new tuples churns probation and
 * evicts only flows that are new themselves. A flow that lasts (a packet
 * at least settings.promote after its first, in state ESTABLISHED or UDP)
 * moves to flows, a plain hash that never evicts: its entries leave only
 * when the daemon's sweep finds them expired. A DR balancer never sees a
 * server's reply, so it cannot tell a spoofed handshake from a real one;
 * what protects an established flow is this shape, not a guess. When flows
 * is full, lasting flows stay in probation (promote_full). One table of
 * each kind per family: an IPv4 lookup hashes a 16-byte key.
 *
 * Probation keeps an LRU list per CPU (BPF_F_NO_COMMON_LRU, as Katran's
 * per-CPU LRUs): an insert that evicts takes no lock shared between CPUs,
 * 305 ns where the common list took 568 ns here with a full table (2 CPUs,
 * BPF_PROG_TEST_RUN). Each CPU's list holds max_entries / possible CPUs,
 * and a flood arriving on one CPU churns only that CPU's share. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_FLOWS_DEFAULT);
	__type(key, struct flow4_key);
	__type(value, struct flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_FLOWS_DEFAULT);
	__type(key, struct flow_key);
	__type(value, struct flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_PROBATION_DEFAULT);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct flow4_key);
	__type(value, struct flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} probation4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_PROBATION_DEFAULT);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct flow_key);
	__type(value, struct flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} probation6 SEC(".maps");

/* The ports of fragmented datagrams, recorded by their first fragment
 * for the later ones (Cilium's scheme). One map shared by every CPU, with
 * one LRU list: NICs differ in whether they hash a first fragment, which
 * has ports, like the later ones, which have none, so the fragments of a
 * datagram may be steered to different CPUs. A record is not deleted by the last fragment, which
 * may arrive before the middle ones; a new datagram's first fragment
 * replaces a stale record of its id. Not kept across restarts: a
 * datagram in flight then loses its later fragments to the kernel. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_FRAGS_DEFAULT);
	__type(key, struct frag_key);
	__type(value, struct frag_ports);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} frags SEC(".maps");

/* Not read by the program: see struct backend_ref. One more entry than
 * there are ids, for the allocator's. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_BACKENDS + 1);
	__type(key, struct backend_ref);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_ids SEC(".maps");

/* Indexed by backend id; internal/datapath clears an entry whenever it
 * writes the backend. An array lookup is inlined: no call. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct nexthop);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nexthops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_MAX_SERVICES + XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

#endif
