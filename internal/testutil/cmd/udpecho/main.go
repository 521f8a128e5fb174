// Command udpecho echoes UDP datagrams, for the probe streams of xlb's
// failover tests and benchmark. On a direct-routing real server the probe
// arrives for the VIP, which sits on lo, so the echo must leave from the
// address the datagram was sent to, not from the address the route would
// choose; udpecho reads each datagram's destination and replies from it.
//
//	udpecho -listen :7 [-listen6 :7] [-name rs1]
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
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

func main() {
	addr := flag.String("listen", ":7", "UDP listen address (IPv4)")
	addr6 := flag.String("listen6", "", "UDP listen address for IPv6 too; empty for none")
	name := flag.String("name", "", `answer "NAME LENGTH" instead of echoing`)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c, err := net.ListenPacket("udp4", *addr)
	if err != nil {
		log.Fatalf("udpecho: %v", err)
	}
	errc := make(chan error, 2)
	go func() { errc <- serve(ctx, c, *name) }()
	servers := 1
	if *addr6 != "" {
		c6, err := net.ListenPacket("udp6", *addr6)
		if err != nil {
			log.Fatalf("udpecho: %v", err)
		}
		servers++
		go func() { errc <- serve(ctx, c6, *name) }()
	}
	fmt.Println("ready")
	for range servers {
		if err := <-errc; err != nil {
			log.Fatalf("udpecho: %v", err)
		}
	}
}

// dstConn reads datagrams with the address each was sent to and writes
// from a given source address, over IPv4 or IPv6.
type dstConn struct {
	read  func(b []byte) (n int, dst net.IP, from net.Addr, err error)
	write func(b []byte, src net.IP, to net.Addr) error
}

// newDstConn asks c's kernel socket for destination addresses.
func newDstConn(c net.PacketConn) (dstConn, error) {
	if isUDP6(c) {
		pc := ipv6.NewPacketConn(c)
		if err := pc.SetControlMessage(ipv6.FlagDst, true); err != nil {
			return dstConn{}, err
		}
		return dstConn{
			read: func(b []byte) (int, net.IP, net.Addr, error) {
				n, cm, from, err := pc.ReadFrom(b)
				if cm != nil {
					return n, cm.Dst, from, err
				}
				return n, nil, from, err
			},
			write: func(b []byte, src net.IP, to net.Addr) error {
				var cm *ipv6.ControlMessage
				if src != nil {
					cm = &ipv6.ControlMessage{Src: src}
				}
				_, err := pc.WriteTo(b, cm, to)
				return err
			},
		}, nil
	}
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
		return dstConn{}, err
	}
	return dstConn{
		read: func(b []byte) (int, net.IP, net.Addr, error) {
			n, cm, from, err := pc.ReadFrom(b)
			if cm != nil {
				return n, cm.Dst, from, err
			}
			return n, nil, from, err
		},
		write: func(b []byte, src net.IP, to net.Addr) error {
			var cm *ipv4.ControlMessage
			if src != nil {
				cm = &ipv4.ControlMessage{Src: src}
			}
			_, err := pc.WriteTo(b, cm, to)
			return err
		},
	}, nil
}

// isUDP6 reports whether c's socket is an IPv6 one (AF_INET6), whatever
// address it is bound to.
func isUDP6(c net.PacketConn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var domain int
	raw.Control(func(fd uintptr) {
		domain, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	})
	return domain == unix.AF_INET6
}

// serve echoes on c until ctx ends, and closes c. A non-empty name answers
// "NAME LENGTH" instead of the datagram.
func serve(ctx context.Context, c net.PacketConn, name string) error {
	defer c.Close()
	addr := c.LocalAddr()
	dc, err := newDstConn(c)
	if err != nil {
		return fmt.Errorf("%s: ask for destination addresses: %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	buf := make([]byte, 65536)
	for {
		n, dst, from, err := dc.read(buf)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("%s: read: %w", addr, err)
		}
		out := buf[:n]
		if name != "" {
			out = fmt.Appendf(nil, "%s %d", name, n)
		}
		// A reply that cannot go out is the prober's loss to count, not
		// a reason to stop serving.
		if err := dc.write(out, dst, from); err != nil {
			log.Printf("udpecho: reply to %s: %v", from, err)
		}
	}
}
