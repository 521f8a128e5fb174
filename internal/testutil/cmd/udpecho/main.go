// Command udpecho echoes UDP datagrams, for the probe streams of xlb's
// failover tests and benchmark. On a direct-routing real server the probe
// arrives for the VIP, which sits on lo, so the echo must leave from the
// address the datagram was sent to, not from the address the route would
// choose; udpecho reads each datagram's destination and replies from it.
//
//	udpecho -listen :7 [-name rs1]
//
// With -name it answers each datagram with "NAME LENGTH" instead of the
// datagram itself: which server received it and how much of it, so a test
// of fragmented datagrams learns that a whole one reached one server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/net/ipv4"
)

func main() {
	addr := flag.String("listen", ":7", "UDP listen address (IPv4)")
	name := flag.String("name", "", `answer "NAME LENGTH" instead of echoing`)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c, err := net.ListenPacket("udp4", *addr)
	if err != nil {
		log.Fatalf("udpecho: %v", err)
	}
	fmt.Println("ready")
	if err := serve(ctx, c, *name); err != nil {
		log.Fatalf("udpecho: %v", err)
	}
}

// serve echoes on c until ctx ends, and closes c. A non-empty name answers
// "NAME LENGTH" instead of the datagram.
func serve(ctx context.Context, c net.PacketConn, name string) error {
	defer c.Close()
	addr := c.LocalAddr()
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
		return fmt.Errorf("%s: ask for destination addresses: %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	buf := make([]byte, 65536)
	for {
		n, cm, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("%s: read: %w", addr, err)
		}
		var reply *ipv4.ControlMessage
		if cm != nil && cm.Dst != nil {
			reply = &ipv4.ControlMessage{Src: cm.Dst}
		}
		// A reply that cannot go out is the prober's loss to count, not
		// a reason to stop serving.
		out := buf[:n]
		if name != "" {
			out = fmt.Appendf(nil, "%s %d", name, n)
		}
		if _, err := pc.WriteTo(out, reply, from); err != nil {
			log.Printf("udpecho: reply to %s: %v", from, err)
		}
	}
}
