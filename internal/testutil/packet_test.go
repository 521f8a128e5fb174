package testutil

import (
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/ipv4"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x10}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	cl4  = netip.MustParseAddr("198.51.100.10")
	cl6  = netip.MustParseAddr("2001:db8:100::10")
)

func TestChecksumKnownValues(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want uint16
	}{
		// RFC 1071 section 3: the words sum to 0xddf2.
		{"rfc1071", "0001f203f4f5f6f7", ^uint16(0xddf2)},
		// The IPv4 header example of Wikipedia's "Internet checksum"
		// article, its checksum field zeroed.
		{"ipv4 header", "450000730000400040110000c0a80001c0a800c7", 0xb861},
		// An odd length pads with a zero byte: 0x0102 + 0x0300.
		{"odd", "010203", ^uint16(0x0402)},
		{"carry folds twice", "ffffffff0001", ^uint16(0x0001)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			if got := Checksum(b); got != tt.want {
				t.Errorf("Checksum(%s) = 0x%04x, want 0x%04x", tt.hex, got, tt.want)
			}
		})
	}
}

// TestUDPChecksumByHand pins one L4 checksum computed by hand, so the
// pseudo-header cannot drift unnoticed (round trips would not catch a
// builder and parser that agree on the same mistake).
func TestUDPChecksumByHand(t *testing.T) {
	f := Frame{
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.11"),
		Proto: ProtoUDP, SrcPort: 1234, DstPort: 53, Payload: []byte("hi"),
	}
	// Pseudo-header c000 0201 c633 640b 0011 000a, header 04d2 0035 000a,
	// data 6869: sum 0x259d4, folded 0x59d6, complement 0xa629.
	ip := f.IP()
	if got := binary.BigEndian.Uint16(ip[ipv4HeaderLen+6:]); got != 0xa629 {
		t.Errorf("udp checksum = 0x%04x, want 0xa629", got)
	}
}

var frameTests = []struct {
	name  string
	frame Frame
}{
	{"tcp4 syn", Frame{SrcMAC: macA, DstMAC: macB, Src: cl4, Dst: VIP4, Proto: ProtoTCP, TTL: 64,
		SrcPort: 40000, DstPort: 80, TCPFlags: TCPSyn, Seq: 1, Window: 64240}},
	{"tcp4 vlan options", Frame{SrcMAC: macA, DstMAC: macB, VLAN: 100, Src: cl4, Dst: VIP4, Proto: ProtoTCP, TTL: 9,
		TOS: 0x10, ID: 7, DontFragment: true, IPv4OptionsLen: 40,
		SrcPort: 40001, DstPort: 443, TCPFlags: TCPAck | TCPPsh, Seq: 1000, Ack: 2000, Window: 512, Payload: []byte("GET / HTTP/1.0\r\n\r\n")}},
	{"udp4 odd payload", Frame{SrcMAC: macA, DstMAC: macB, Src: cl4, Dst: VIP4, Proto: ProtoUDP, TTL: 64,
		SrcPort: 5353, DstPort: 53, Payload: []byte("abc")}},
	{"udp4 first fragment", Frame{SrcMAC: macA, DstMAC: macB, Src: cl4, Dst: VIP4, Proto: ProtoUDP, TTL: 64,
		ID: 0x1234, MoreFragments: true, SrcPort: 1, DstPort: 2, Payload: make([]byte, 16)}},
	{"ipv4 later fragment", Frame{SrcMAC: macA, DstMAC: macB, Src: cl4, Dst: VIP4, Proto: ProtoUDP, TTL: 64,
		ID: 0x1234, FragOffset: 3, Payload: []byte("rest of it")}},
	{"icmp4 frag needed", Frame{SrcMAC: macA, DstMAC: macB, Src: netip.MustParseAddr("203.0.113.1"), Dst: VIP4, Proto: ProtoICMP, TTL: 64,
		ICMPType: 3, ICMPCode: 4, ICMPRest: 1400,
		Payload: Frame{Src: VIP4, Dst: cl4, Proto: ProtoTCP, TTL: 64, SrcPort: 80, DstPort: 40000, TCPFlags: TCPAck}.IP()}},
	{"tcp6", Frame{SrcMAC: macA, DstMAC: macB, Src: cl6, Dst: VIP6, Proto: ProtoTCP, TTL: 255, TOS: 0xb8,
		SrcPort: 40000, DstPort: 80, TCPFlags: TCPSyn, Window: 1}},
	{"udp6 vlan", Frame{SrcMAC: macA, DstMAC: macB, VLAN: 4094, Src: cl6, Dst: VIP6, Proto: ProtoUDP, TTL: 64,
		SrcPort: 5353, DstPort: 53, Payload: []byte("hello")}},
	{"icmp6 echo", Frame{SrcMAC: macA, DstMAC: macB, Src: cl6, Dst: VIP6, Proto: ProtoICMPv6, TTL: 64,
		ICMPType: 128, ICMPRest: 0x00010002, Payload: []byte("ping")}},
	{"other protocol", Frame{SrcMAC: macA, DstMAC: macB, Src: cl4, Dst: VIP4, Proto: 47, TTL: 64, Payload: []byte{1, 2, 3, 4}}},
}

func TestFrameRoundTrip(t *testing.T) {
	for _, tt := range frameTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFrame(tt.frame.Bytes())
			if err != nil {
				t.Fatalf("ParseFrame: %v", err)
			}
			if diff := cmp.Diff(tt.frame, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("ParseFrame(Bytes()) mismatch (-built +parsed):\n%s", diff)
			}
		})
	}
}

// TestFrameGolden pins the exact bytes, so a change in layout shows up as a
// readable diff of hex lines.
func TestFrameGolden(t *testing.T) {
	for _, tt := range frameTests {
		t.Run(tt.name, func(t *testing.T) {
			got := hexLines(tt.frame.Bytes())
			path := filepath.Join("testdata", "frames", strings.ReplaceAll(tt.name, " ", "_")+".hex")
			Golden(t, path, []byte(got))
		})
	}
}

func hexLines(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		n := min(16, len(b))
		sb.WriteString(hex.EncodeToString(b[:n]))
		sb.WriteByte('\n')
		b = b[n:]
	}
	return sb.String()
}

// TestIPv4HeaderAgainstXNet has golang.org/x/net/ipv4, an independent
// parser, read every IPv4 header Frame builds.
func TestIPv4HeaderAgainstXNet(t *testing.T) {
	for _, tt := range frameTests {
		f := tt.frame
		if !f.Src.Is4() {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			ip := f.IP()
			h, err := ipv4.ParseHeader(ip)
			if err != nil {
				t.Fatal(err)
			}
			var flags ipv4.HeaderFlags
			if f.DontFragment {
				flags |= ipv4.DontFragment
			}
			if f.MoreFragments {
				flags |= ipv4.MoreFragments
			}
			var opts []byte
			if f.IPv4OptionsLen > 0 {
				opts = []byte(strings.Repeat("\x01", f.IPv4OptionsLen))
			}
			want := &ipv4.Header{
				Version: 4, Len: ipv4HeaderLen + f.IPv4OptionsLen, TOS: int(f.TOS), TotalLen: len(ip),
				ID: int(f.ID), Flags: flags, FragOff: int(f.FragOffset), TTL: int(f.TTL), Protocol: int(f.Proto),
				Checksum: int(binary.BigEndian.Uint16(ip[10:])), Src: f.Src.AsSlice(), Dst: f.Dst.AsSlice(), Options: opts,
			}
			if diff := cmp.Diff(want, h); diff != "" {
				t.Errorf("x/net/ipv4 header mismatch (-want +got):\n%s", diff)
			}
			if c := Checksum(ip[:h.Len]); c != 0 {
				t.Errorf("header sums to 0x%04x with its checksum, want 0", c)
			}
		})
	}
}

func TestFrameDefaults(t *testing.T) {
	b := Frame{Src: cl4, Dst: VIP4, Proto: ProtoUDP}.Bytes()
	if got := b[ethHeaderLen+8]; got != 64 {
		t.Errorf("default TTL = %d, want 64", got)
	}
	if got := b[:12]; !cmp.Equal(got, make([]byte, 12)) {
		t.Errorf("nil MACs built as %x, want zeros", got)
	}
}

func TestUDPZeroChecksumSentAsOnes(t *testing.T) {
	// With a zero payload word the sum is s and the checksum ^s; putting
	// ^s into that word makes the sum 0xffff, whose complement is zero.
	f := Frame{Src: cl4, Dst: VIP4, Proto: ProtoUDP, SrcPort: 1, DstPort: 2, Payload: []byte{0, 0}}
	c := binary.BigEndian.Uint16(f.IP()[ipv4HeaderLen+6:])
	binary.BigEndian.PutUint16(f.Payload, c)
	got := binary.BigEndian.Uint16(f.IP()[ipv4HeaderLen+6:])
	if got != 0xffff {
		t.Errorf("udp checksum that computes to zero sent as 0x%04x, want 0xffff", got)
	}
	if _, err := ParseFrame(f.Bytes()); err != nil {
		t.Errorf("ParseFrame: %v", err)
	}
}

func TestParseFrameErrors(t *testing.T) {
	good := frameTests[0].frame.Bytes()
	good6 := frameTests[6].frame.Bytes()
	corrupt := func(b []byte, i int) []byte {
		c := append([]byte(nil), b...)
		c[i] ^= 0x40
		return c
	}
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"short", good[:10], "shorter than an Ethernet header"},
		{"arp", append(append([]byte(nil), good[:12]...), 0x08, 0x06), "neither IPv4 nor IPv6"},
		{"ip header checksum", corrupt(good, ethHeaderLen+8), "ipv4 header checksum"},
		{"tcp payload bit", corrupt(good, ethHeaderLen+ipv4HeaderLen+5), "checksum"},
		{"ipv6 source bit", corrupt(good6, ethHeaderLen+9), "ip protocol 6 checksum"},
		{"truncated", good[:len(good)-1], "total length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFrame(tt.b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseFrame error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
