// Package e2e holds xlb's end-to-end tests and its system benchmarks.
// They run the real xlb binary, built once per test process, in the lb1
// (and, for failover, lb2) namespaces of scripts/topology.sh, with real
// servers answering HTTP and echoing TCP and UDP in rs1..rs3 and real
// traffic from the client through the VIP: what a user running `xlb run`
// in place of IPVS direct routing and keepalived would see. The tests
// cover DR forwarding, reloads, health checks with drain and recovery, the
// sorry server, and VRRP failover between two balancers; the benchmarks
// measure reload cost, health-check detection and recovery, and failover
// outage beside keepalived.
//
// Everything here needs root (namespaces, XDP, bpffs) and skips without
// it. The package has no non-test code; this file only documents it.
package e2e
