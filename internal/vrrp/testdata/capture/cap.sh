#!/bin/bash
# usage: cap.sh NAME  (conf in NAME.conf) ; writes NAME.pcap
set -e
N=$1
A=xcapa$$ B=xcapb$$
ip netns add $A; ip netns add $B
cleanup(){ [ -f $N.vrrp.pid ] && kill $(cat $N.pid) 2>/dev/null; sleep 0.3; ip netns del $A; ip netns del $B; }
trap cleanup EXIT
ip link add vk0 netns $A type veth peer name vk1 netns $B
for ns in $A $B; do ip netns exec $ns sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0; done
ip -n $A link set vk0 address 02:00:00:00:00:01
ip -n $B link set vk1 address 02:00:00:00:00:02
ip -n $A addr add 198.51.100.1/24 dev vk0; ip -n $B addr add 198.51.100.2/24 dev vk1
ip -n $A addr add 2001:db8::1/64 dev vk0 nodad; ip -n $B addr add 2001:db8::2/64 dev vk1 nodad
ip -n $A link set vk0 up; ip -n $B link set vk1 up; ip -n $A link set lo up
ip netns exec $B timeout 8 tcpdump -i vk1 -w $N.pcap -U 'ip proto 112 or ip6 proto 112' 2>/dev/null &
sleep 0.5
ip netns exec $A /usr/sbin/keepalived -n -l -D -P -f $PWD/$N.conf -p $PWD/$N.pid -r $PWD/$N.vrrp.pid -c $PWD/$N.chk.pid > $N.log 2>&1 &
KP=$!
sleep 5
kill -TERM $KP; wait $KP || true
wait
