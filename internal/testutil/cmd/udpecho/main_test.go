package main

import (
	"context"
	"fmt"
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
	go func() { done <- serve(ctx, srv, "") }()
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

// TestNamedAnswer: with a name, each datagram is answered with the name and
// its length, from the address it was sent to, over IPv4 and IPv6.
func TestNamedAnswer(t *testing.T) {
	for _, tt := range []struct {
		network, listen, client, to string
	}{
		{"udp4", "0.0.0.0:0", "127.0.0.1:0", "127.0.0.5"},
		{"udp6", "[::]:0", "[::1]:0", "::1"},
	} {
		t.Run(tt.network, func(t *testing.T) {
			srv, err := net.ListenPacket(tt.network, tt.listen)
			if err != nil {
				t.Skipf("no %s here: %v", tt.network, err)
			}
			port := srv.LocalAddr().(*net.UDPAddr).AddrPort().Port()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- serve(ctx, srv, "rs9") }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			})
			client, err := net.ListenUDP(tt.network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tt.client)))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			to := netip.AddrPortFrom(netip.MustParseAddr(tt.to), port)
			for _, n := range []int{1, 1400, 9000} {
				if _, err := client.WriteToUDPAddrPort(make([]byte, n), to); err != nil {
					t.Fatalf("send %d bytes to %s: %v", n, to, err)
				}
				if err := client.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 1500)
				m, from, err := client.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("answer to %d bytes: %v", n, err)
				}
				if want := fmt.Sprintf("rs9 %d", n); string(buf[:m]) != want || from != to {
					t.Errorf("answer to %d bytes: %q from %s, want %q from %s", n, buf[:m], from, want, to)
				}
			}
		})
	}
}
