#!/usr/bin/env bash
# realserver.sh prepares a real server inside network namespace NS: every VIP
# on lo (/32, /128), so the server accepts packets the LB forwarded with the
# VIP still as destination, and the ARP sysctls that stop it from answering
# or advertising the VIP on a segment it shares with the LB, where only the
# LB may own it. That is all direct routing (DR) needs.
#
# A tunnel (TUN) real server may sit anywhere the balancer can route to: the
# balancer wraps each packet in an outer header to the server's own address,
# and the server takes that header off and answers the client directly.
# --tunnel says which encapsulation the balancer uses for it (keepalived's
# `lvs_method TUN type ipip` or `type gue port PORT`):
#
#   ipip      IPv4 in IPv4 and IPv6 in IPv6: a catch-all ("external", that is
#             collect-metadata) ipip device, xlbtun4, and ip6tnl device,
#             xlbtun6, which receive every tunnelled packet whatever its outer
#             addresses, so nothing here names the balancers.
#   gue:PORT  the same devices, also fed by a fou listener in GUE mode on
#             UDP PORT, IPv4 and IPv6 (`ip fou add port PORT gue [-6]`); plain
#             ipip keeps working, so a server can be both at once.
#
# The decapsulated packet arrives on xlbtun4 with the client as source,
# while the route back to the client leaves through the uplink: a strict
# rp_filter (1) drops it as spoofed. The kernel applies the larger of
# conf/all and conf/DEV, so both are set to loose (2), which only asks that
# the client be reachable at all. IPv6 has no rp_filter.
#
# The outer header costs 20 bytes (ipip), 32 (GUE over IPv4), 40 (IPv6 in
# IPv6) or 52 (GUE over IPv6) on the balancer's path to this server; a
# client's full-sized segment no longer fits a 1500-byte link. Advertise a
# smaller MSS on this server's routes to its clients (`ip route ... advmss
# 1400`; 1380 for IPv6) or raise the MTU between balancer and server.
#
# Kernels without the ipip, ip6_tunnel and fou modules (the test VMs' among
# them) can take the header off with an XDP program instead: --decap-obj
# OBJ attaches OBJ's "xdp" section (internal/testutil/decap) to the uplink;
# the inner packet then arrives on the uplink itself. That program knows
# GUE on port 6080 only.
#
# Usage: realserver.sh [--tunnel ipip|gue:PORT [--decap-obj OBJ]] NS VIP...
# NS "-" means the current namespace (a real host or VM); RS_IFACE names the
# interface facing the balancer, or for a tunnel the uplink (default eth0).
# Idempotent: addresses are replaced, devices and listeners kept when they
# are there, sysctls set to fixed values.
set -euo pipefail

usage() { echo "usage: $0 [--tunnel ipip|gue:PORT [--decap-obj OBJ]] NS VIP..." >&2; exit 2; }
die() { echo "realserver.sh: $*" >&2; exit 1; }

tunnel="" gue_port="" decap_obj=""
while [ $# -gt 0 ]; do
	case $1 in
	--tunnel) [ $# -ge 2 ] || usage; tunnel=$2; shift 2 ;;
	--tunnel=*) tunnel=${1#*=}; shift ;;
	--decap-obj) [ $# -ge 2 ] || usage; decap_obj=$2; shift 2 ;;
	--decap-obj=*) decap_obj=${1#*=}; shift ;;
	--) shift; break ;;
	-*) usage ;;
	*) break ;;
	esac
done
case $tunnel in
"" | ipip) ;;
gue:*)
	gue_port=${tunnel#gue:}
	[[ $gue_port =~ ^[0-9]+$ ]] && [ "$gue_port" -ge 1 ] && [ "$gue_port" -le 65535 ] ||
		die "--tunnel $tunnel: the port must be 1..65535"
	tunnel=gue
	;;
*) die "--tunnel $tunnel: want ipip or gue:PORT" ;;
esac
if [ -n "$decap_obj" ]; then
	[ -n "$tunnel" ] || die "--decap-obj needs --tunnel"
	[ -r "$decap_obj" ] || die "--decap-obj $decap_obj is not readable"
	[ "$tunnel" != gue ] || [ "$gue_port" = 6080 ] ||
		die "--decap-obj decapsulates GUE on port 6080 only, not $gue_port"
fi
[ $# -ge 2 ] || usage
ns=$1
shift
if=${RS_IFACE:-eth0}
if [ "$ns" = - ]; then
	nsip() { ip "$@"; }
	nsx() { "$@"; }
else
	[ -e "/run/netns/$ns" ] || die "no network namespace $ns"
	nsip() { ip -n "$ns" "$@"; }
	nsx() { ip netns exec "$ns" "$@"; }
fi

nsip link set lo up
for vip in "$@"; do
	case $vip in
	*:*) nsip -6 addr replace "$vip/128" dev lo ;;
	*.*) nsip addr replace "$vip/32" dev lo ;;
	*) die "$vip is not an IP address" ;;
	esac
done

# arp_ignore=1: answer ARP only for addresses on the receiving interface (not
# the VIP on lo). arp_announce=2: source ARP requests from the interface's own
# address, never the VIP. Both on "all" and the interface, since the kernel
# takes the maximum. rp_filter loose: the client's address is reachable, but a
# strict check has no business on a DR server. arp_notify/ndisc_notify:
# announce a changed MAC at once, so an LB following neighbour events learns
# it without waiting for its own revalidation.
for kv in \
	net.ipv4.conf.all.arp_ignore=1 "net.ipv4.conf.$if.arp_ignore=1" \
	net.ipv4.conf.all.arp_announce=2 "net.ipv4.conf.$if.arp_announce=2" \
	net.ipv4.conf.all.rp_filter=2 "net.ipv4.conf.$if.rp_filter=2" \
	net.ipv4.conf.all.arp_notify=1 "net.ipv4.conf.$if.arp_notify=1" \
	net.ipv6.conf.all.ndisc_notify=1 "net.ipv6.conf.$if.ndisc_notify=1"; do
	nsx sysctl -qw "$kv" >/dev/null
done

[ -n "$tunnel" ] || exit 0

if [ -n "$decap_obj" ]; then
	# Any XDP program already there is taken to be this one: re-running
	# must not fail on, or replace, what an earlier run attached.
	nsip link show dev "$if" | grep -q 'prog/xdp' ||
		nsip link set dev "$if" xdp obj "$decap_obj" sec xdp
	exit 0
fi

# tundev NAME TYPE... creates a catch-all tunnel device unless it exists.
tundev() {
	local name=$1
	shift
	if ! nsip link show dev "$name" >/dev/null 2>&1; then
		nsip link add name "$name" "$@" external ||
			die "cannot create $name ($*): does this kernel have the ipip and ip6_tunnel modules? Without them, use --decap-obj"
	fi
	nsip link set dev "$name" up
}
tundev xlbtun4 type ipip
tundev xlbtun6 type ip6tnl mode ip6ip6
nsx sysctl -qw net.ipv4.conf.xlbtun4.rp_filter=2 >/dev/null

if [ "$tunnel" = gue ]; then
	# `ip fou show` lists "port N gue" and, for IPv6, "port N gue -6".
	fous=$(nsip fou show 2>/dev/null || true)
	grep -qx "port $gue_port gue" <<<"$fous" || nsip fou add port "$gue_port" gue ||
		die "cannot listen for GUE on port $gue_port: does this kernel have the fou module? Without it, use --decap-obj"
	grep -qx "port $gue_port gue -6" <<<"$fous" || nsip fou add port "$gue_port" gue -6 ||
		die "cannot listen for GUE over IPv6 on port $gue_port"
fi
