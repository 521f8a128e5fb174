#!/bin/bash
# extract.sh PCAP OUTPREFIX : writes OUTPREFIX.hex (first advert) and OUTPREFIX-prio0.hex
pcap=$1; out=$2; tmp=$(mktemp)
tcpdump -r $pcap -nx 2>/dev/null | awk '
/^[0-9]/ { if (hex!="") print hex; hex="" ; next }
/0x/ { for (i=2;i<=NF;i++) hex=hex $i }
END { if (hex!="") print hex }' > "$tmp"
first=1
while read -r h; do
  if [ "${h:0:1}" = 4 ]; then
    src=$(printf '%d.%d.%d.%d' 0x${h:24:2} 0x${h:26:2} 0x${h:28:2} 0x${h:30:2})
    dst=$(printf '%d.%d.%d.%d' 0x${h:32:2} 0x${h:34:2} 0x${h:36:2} 0x${h:38:2})
    ttl=$((0x${h:16:2})); pl=${h:40}
  else
    src=$(python3 -c "import ipaddress;print(ipaddress.IPv6Address(bytes.fromhex('${h:16:32}')))")
    dst=$(python3 -c "import ipaddress;print(ipaddress.IPv6Address(bytes.fromhex('${h:48:32}')))")
    ttl=$((0x${h:14:2})); pl=${h:80}
  fi
  prio=$((0x${pl:4:2}))
  if [ $prio = 0 ]; then f=$out-prio0.hex; elif [ $first = 1 ]; then f=$out.hex; first=0; else continue; fi
  { echo "# VRRP payload (IP header stripped) sent by keepalived 2.2.7; see README.md"
    echo "src $src"; echo "dst $dst"; echo "ttl $ttl"; echo "payload $pl"; } > $f
done < "$tmp"; rm -f "$tmp"
