#!/usr/bin/env bash
# realserver.sh prepares a direct-routing real server inside network
# namespace NS: every VIP on lo (/32, /128), so the server accepts packets the
# LB forwarded with the VIP still as destination, and the ARP sysctls that stop
# it from answering or advertising the VIP on the shared segment, where only
# the LB may own it.
#
# Usage: realserver.sh NS VIP...
# NS "-" means the current namespace (a real host or VM); RS_IFACE names the
# interface facing the balancer (default eth0).
# Idempotent: addresses are replaced, sysctls set to fixed values.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 NS VIP..." >&2; exit 2; }
ns=$1
shift
if=${RS_IFACE:-eth0}
if [ "$ns" = - ]; then
	nsip() { ip "$@"; }
	nsx() { "$@"; }
else
	[ -e "/run/netns/$ns" ] || { echo "realserver.sh: no network namespace $ns" >&2; exit 1; }
	nsip() { ip -n "$ns" "$@"; }
	nsx() { ip netns exec "$ns" "$@"; }
fi

nsip link set lo up
for vip in "$@"; do
	case $vip in
	*:*) nsip -6 addr replace "$vip/128" dev lo ;;
	*.*) nsip addr replace "$vip/32" dev lo ;;
	*) echo "realserver.sh: $vip is not an IP address" >&2; exit 1 ;;
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
