// Package e2e holds xlb's end-to-end tests and its control-plane benchmark.
// They run the real xlb binary, built once per test process, in the lb1
// namespace of scripts/topology.sh, with real servers answering HTTP and
// echoing TCP in rs1..rs3 and real traffic from the client through the VIP:
// what a user running `xlb run` in place of IPVS direct routing would see.
//
// Everything here needs root (namespaces, XDP, bpffs) and skips without
// it. The package has no non-test code; this file only documents it.
package e2e
