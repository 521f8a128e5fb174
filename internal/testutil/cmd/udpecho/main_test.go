package main

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestEchoFromDestination sends to loopback addresses other than the one
// the route to the sender would pick: each echo must come back whole and
// from the address the datagram went to, as a DR real server's reply
// must come from the VIP.
func TestEchoFromDestination(t *testing.T) {
	srv, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := srv.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, srv) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	client, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	tests := []struct {
		to      string
		payload string
	}{
		{"127.0.0.1", "probe 1"},
		{"127.0.0.7", "probe 2"},
		{"127.1.2.3", "a longer probe of several words"},
	}
	for _, tt := range tests {
		to := netip.AddrPortFrom(netip.MustParseAddr(tt.to), port)
		if _, err := client.WriteToUDPAddrPort([]byte(tt.payload), to); err != nil {
			t.Fatalf("send to %s: %v", to, err)
		}
		if err := client.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		n, from, err := client.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("echo from %s: %v", to, err)
		}
		if from != to {
			t.Errorf("sent to %s, echo came from %s", to, from)
		}
		if got := string(buf[:n]); got != tt.payload {
			t.Errorf("sent %q to %s, echo was %q", tt.payload, to, got)
		}
	}
}
