package testutil

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFrameKernelAccepts uses the Linux stack as an independent checksum
// oracle: a frame injected on the client's eth0 toward rs1's closed port 9
// is answered (TCP RST, ICMP port unreachable) only if rs1's kernel found
// every checksum right, as it verifies them before answering. The answers
// are parsed with ParseFrame, which checks the kernel's checksums in turn.
func TestFrameKernelAccepts(t *testing.T) {
	RequireRoot(t, netnsReason)
	topo := NewTopology(t, TopologyOptions{})
	base := Frame{SrcMAC: HostMAC(Client), DstMAC: HostMAC(RS1), TTL: 64, SrcPort: 40000, DstPort: 9}
	tests := []struct {
		name  string
		v6    bool
		edit  func(*Frame)
		check func(Frame) bool
	}{
		{"tcp4 syn", false, func(f *Frame) { f.Proto, f.TCPFlags, f.Seq, f.Window = ProtoTCP, TCPSyn, 1000, 64240 },
			func(r Frame) bool { return r.Proto == ProtoTCP && r.TCPFlags&TCPRst != 0 && r.Ack == 1001 }},
		{"tcp4 syn with options and payload", false, func(f *Frame) {
			f.Proto, f.TCPFlags, f.Seq, f.Window, f.IPv4OptionsLen, f.Payload = ProtoTCP, TCPSyn, 7, 1, 40, []byte("odd")
		}, func(r Frame) bool { return r.Proto == ProtoTCP && r.TCPFlags&TCPRst != 0 && r.Ack == 7+1+3 }},
		{"udp4", false, func(f *Frame) { f.Proto, f.Payload = ProtoUDP, []byte("hello") },
			func(r Frame) bool { return r.Proto == ProtoICMP && r.ICMPType == 3 && r.ICMPCode == 3 }},
		{"tcp6 syn", true, func(f *Frame) { f.Proto, f.TCPFlags, f.Seq, f.Window = ProtoTCP, TCPSyn, 5, 512 },
			func(r Frame) bool { return r.Proto == ProtoTCP && r.TCPFlags&TCPRst != 0 && r.Ack == 6 }},
		{"udp6", true, func(f *Frame) { f.Proto, f.Payload = ProtoUDP, []byte("hello!") },
			func(r Frame) bool { return r.Proto == ProtoICMPv6 && r.ICMPType == 1 && r.ICMPCode == 4 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base
			f.Src, f.Dst = HostIP4(Client), HostIP4(RS1)
			if tt.v6 {
				f.Src, f.Dst = HostIP6(Client), HostIP6(RS1)
			}
			tt.edit(&f)
			reply, err := exchange(topo, Client, f, tt.check)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("rs1 answered: proto %d flags %#x icmp %d/%d", reply.Proto, reply.TCPFlags, reply.ICMPType, reply.ICMPCode)
		})
	}
}

// exchange sends f on host's eth0 through a packet socket and returns the
// first frame from f.Dst back to f.Src that satisfies match; frames that
// fail ParseFrame's checks are an error.
func exchange(topo *Topology, host string, f Frame, match func(Frame) bool) (Frame, error) {
	var reply Frame
	err := topo.Do(host, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind packet socket to eth0: %w", err)
		}
		tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		deadline := time.Now().Add(5 * time.Second)
		nextSend := time.Now()
		buf := make([]byte, 4096)
		for time.Now().Before(deadline) {
			// Resend now and then: the first frame may wait on rs1
			// resolving the client's MAC.
			if time.Now().After(nextSend) {
				if err := unix.Sendto(fd, f.Bytes(), 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
					return fmt.Errorf("send: %w", err)
				}
				nextSend = time.Now().Add(time.Second)
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout: loop to resend or give up
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			r, err := ParseFrame(buf[:n])
			if err != nil || r.Src != f.Dst || r.Dst != f.Src {
				if err == nil || !isFrom(buf[:n], f.Dst) {
					continue // ARP, NDP, other traffic
				}
				return fmt.Errorf("reply from %s: %w", f.Dst, err)
			}
			if match(r) {
				reply = r
				return nil
			}
		}
		return fmt.Errorf("no matching reply from %s within 5s: did its kernel drop the frame?", f.Dst)
	})
	return reply, err
}

// isFrom tells whether a frame that failed to parse at least carries src as
// its IP source, which makes the failure worth reporting.
func isFrom(b []byte, src netip.Addr) bool {
	if len(b) < 14+40 {
		return false
	}
	if src.Is4() {
		a, _ := netip.AddrFromSlice(b[14+12 : 14+16])
		return a == src
	}
	a, _ := netip.AddrFromSlice(b[14+8 : 14+24])
	return a == src
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
