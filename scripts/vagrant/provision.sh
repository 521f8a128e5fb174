#!/usr/bin/env bash
# provision.sh turns a Debian 12 VM into one host of the xlb topology, the
# same hosts and addresses scripts/topology.sh builds in namespaces:
#
#   client .10   lb1 .2   lb2 .3   rs1 .11   rs2 .12    on 198.51.100.0/24
#
# VIP 192.0.2.10 is on-link for the client, floats between lb1 and lb2 by
# VRRP (xlb's own), and sits on the real servers' lo. The Vagrantfile runs
# this on every boot (run: "always"): routes and addresses do not persist,
# and every step replaces rather than adds.
#
# With MODE bgp (XLB_BGP=1 make vagrant), the layer-3 site of
# `topology.sh up --router`: rtr (.1, and 203.0.113.1 toward the client at
# 203.0.113.10) runs BIRD 2 with ECMP; lb1..lb3 announce the VIP to it over
# BGP (examples/bgp.yaml extending examples/keepalived.conf), and the real
# servers answer the client through rtr.
#
# Usage: provision.sh ROLE [MODE]   (client, lb1, lb2, lb3, rtr, rs1, rs2; vrrp or bgp)
# The repository is mounted at /vagrant; the LBs and real servers run the
# binaries `make vagrant` built there (bin/xlb, bin/rsserver): Debian 12's
# Go is too old to build xlb in the VM.
set -euo pipefail

role=${1:?usage: provision.sh ROLE [vrrp|bgp]}
mode=${2:-vrrp}
REPO=/vagrant
NET4=198.51.100
VIP4=192.0.2.10

die() { echo "provision.sh: $*" >&2; exit 1; }

# iface is the interface on the topology's network. Vagrant's first NIC is
# its own NAT, and the private NIC's name depends on box and provider, so
# find it by the address Vagrant gave it.
iface() {
	local dev
	dev=$(ip -o -4 addr show | awk -v net="$NET4." 'index($4, net) == 1 { print $2; exit }')
	[ -n "$dev" ] || die "no interface has an address in $NET4.0/24"
	echo "$dev"
}

need_bin() {
	[ -x "$REPO/bin/$1" ] || die "$REPO/bin/$1 is missing: run 'make vagrant' on the host (it builds the binaries before 'vagrant up')"
}

apt_install() {
	local missing=() p
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] && return
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# service runs cmd as a transient systemd unit, replacing an earlier one.
service() {
	local unit=$1
	shift
	systemctl stop "$unit" 2>/dev/null || true
	systemctl reset-failed "$unit" 2>/dev/null || true
	systemd-run --quiet --unit "$unit" "$@"
}

dev=$(iface)
apt_install iproute2 curl tcpdump

case $role in
client)
	if [ "$mode" = bgp ]; then
		ip route replace "$VIP4/32" via 203.0.113.1
	else
		# The VIP is on-link: the client ARPs for it, and the VRRP master answers.
		ip route replace "$VIP4/32" dev "$dev"
	fi
	;;
rtr)
	apt_install bird2
	sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 net.ipv4.conf.all.send_redirects=0
	{
		echo "router id $NET4.1;"
		echo "protocol device {}"
		echo "protocol kernel kern4 { ipv4 { import none; export all; }; merge paths on; }"
		echo "filter from_balancers { if (65535, 0) ~ bgp_community then bgp_local_pref = 0; accept; }"
		echo "template bgp balancer { local as 65000; passive on; hold time 9; keepalive time 3; error wait time 1, 5;"
		echo "	ipv4 { import filter from_balancers; export none; }; }"
		for n in 2 3 4; do echo "protocol bgp bal_$n from balancer { neighbor $NET4.$n as 65001; }"; done
	} >/etc/bird/bird.conf
	systemctl enable --quiet bird
	systemctl restart bird
	;;
lb1 | lb2 | lb3)
	need_bin xlb
	apt_install bpftool
	install -m 0755 "$REPO/bin/xlb" /usr/local/sbin/xlb
	install -d -m 0755 /etc/xlb
	prio=150
	[ "$role" = lb2 ] && prio=100
	sed -e "s/\\<eth1\\>/$dev/g" -e "s/^\\( *priority\\) 150\$/\\1 $prio/" \
		"$REPO/examples/keepalived-ha.conf" >/etc/xlb/keepalived.conf
	conf=/etc/xlb/keepalived.conf
	if [ "$mode" = bgp ]; then
		# Every balancer serves the same services; BGP, not VRRP, places
		# the VIP.
		install -m 0644 "$REPO/examples/keepalived.conf" /etc/xlb/keepalived.conf
		sed -e "s|^extends: .*|extends: keepalived.conf|" \
			-e "s|router_id: .*|router_id: $(ip -o -4 addr show dev "$dev" | awk '{print $4}' | cut -d/ -f1)|" \
			"$REPO/examples/bgp.yaml" >/etc/xlb/xlb.yaml
		conf=/etc/xlb/xlb.yaml
	fi
	/usr/local/sbin/xlb check -f "$conf" >/dev/null
	# Virtual NICs differ in native XDP support; auto falls back to generic.
	printf 'XLB_CONFIG=%s\nXLB_IFACE=%s\nXLB_ARGS=--xdp-mode auto\n' "$conf" "$dev" >/etc/default/xlb
	install -m 0644 "$REPO/contrib/xlb.service" /etc/systemd/system/xlb.service
	systemctl daemon-reload
	systemctl enable --quiet xlb
	systemctl restart xlb
	;;
rs1 | rs2)
	need_bin rsserver
	RS_IFACE=$dev "$REPO/scripts/realserver.sh" - "$VIP4"
	# Replies to the client's network go back through the router.
	[ "$mode" = bgp ] && ip route replace 203.0.113.0/24 via "$NET4.1"
	install -m 0755 "$REPO/bin/rsserver" /usr/local/bin/rsserver
	service xlb-rsserver /usr/local/bin/rsserver -name "$role" -http :80 -echo :7
	;;
*)
	die "unknown role $role (client, lb1, lb2, lb3, rtr, rs1, rs2)"
	;;
esac
echo "provision.sh: $role ready on $dev"
