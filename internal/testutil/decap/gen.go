// Package decap holds xdp_decap, the BPF program that decapsulates IPIP and
// GUE on a TUN real server whose kernel has no ipip, ip6_tunnel or fou
// modules (see csrc/decap.c and scripts/realserver.sh --decap-obj). It has no Go
// API: iproute2 attaches the object.
package decap

// Plain clang rather than bpf2go: nothing in Go loads this object, and
// bpf2go would generate cilium/ebpf bindings, which only internal/datapath
// may import. Without -g the object carries no build paths, so it is
// byte-reproducible and `make check-generated` compares it like the rest.
//go:generate clang -O2 -Wall -Werror -mcpu=v3 -target bpf -I/usr/include/x86_64-linux-gnu -c csrc/decap.c -o decap_bpfel.o
