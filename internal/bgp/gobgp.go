package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	apipb "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	protobuf "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xlb-project/xlb/internal/api"
	"github.com/xlb-project/xlb/internal/service"
)

// goBGP is the Speaker of production: GoBGP's server as a library, with
// no gRPC listener (the daemon's own API is the only way in).
type goBGP struct {
	s     *server.BgpServer
	log   *slog.Logger
	peers map[netip.Addr]*apipb.Peer
}

// NewGoBGP returns a Speaker that runs GoBGP in this process, logging to
// log.
func NewGoBGP(log *slog.Logger) Speaker {
	return &goBGP{log: log, peers: map[netip.Addr]*apipb.Peer{}}
}

func (g *goBGP) Start(ctx context.Context, b *service.BGP) error {
	g.s = server.NewBgpServer(server.LoggerOption(&logAdapter{log: g.log}))
	go g.s.Serve()
	port := int32(-1) // no listener: every session is opened from here
	if b.ListenPort != 0 {
		port = int32(b.ListenPort)
	}
	if err := g.s.StartBgp(ctx, &apipb.StartBgpRequest{Global: &apipb.Global{
		Asn: b.LocalAS, RouterId: b.RouterID.String(), ListenPort: port,
	}}); err != nil {
		g.s.Stop()
		return err
	}
	if err := g.SetPeers(ctx, b); err != nil {
		g.s.Stop()
		return err
	}
	return nil
}

func (g *goBGP) SetPeers(ctx context.Context, b *service.BGP) error {
	want := map[netip.Addr]*apipb.Peer{}
	for _, p := range b.Peers {
		want[p.Address] = peerOf(p, b)
	}
	// A peer whose settings (the section's timers included) changed is
	// replaced: GoBGP applies most of them only to a new session anyway.
	for addr, old := range g.peers {
		if p, ok := want[addr]; ok && protobuf.Equal(p, old) {
			continue
		}
		if err := g.s.DeletePeer(ctx, &apipb.DeletePeerRequest{Address: addr.String()}); err != nil {
			return fmt.Errorf("delete peer %s: %w", addr, err)
		}
		delete(g.peers, addr)
	}
	for addr, p := range want {
		if _, ok := g.peers[addr]; ok {
			continue
		}
		// AddPeer keeps the message: it gets a copy.
		if err := g.s.AddPeer(ctx, &apipb.AddPeerRequest{Peer: protobuf.Clone(p).(*apipb.Peer)}); err != nil {
			return fmt.Errorf("add peer %s (as %d): %w", addr, p.Conf.PeerAsn, err)
		}
		g.peers[addr] = p
	}
	return nil
}

func peerOf(p service.BGPPeer, b *service.BGP) *apipb.Peer {
	pp := &apipb.Peer{
		Conf: &apipb.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.AS, AuthPassword: p.Password},
		Timers: &apipb.Timers{Config: &apipb.TimersConfig{
			HoldTime: uint64(b.HoldTime.Seconds()), KeepaliveInterval: uint64(b.KeepaliveTime.Seconds()),
			ConnectRetry: uint64(b.ConnectRetry.Seconds()),
			// Advertise at once: a withdrawal waits for nothing.
			MinimumAdvertisementInterval: 0,
			IdleHoldTimeAfterReset:       uint64(b.ConnectRetry.Seconds()),
		}},
		Transport: &apipb.Transport{RemotePort: uint32(p.Port)},
	}
	if p.LocalAddress.IsValid() {
		pp.Transport.LocalAddress = p.LocalAddress.String()
	}
	if p.Multihop > 0 {
		pp.EbgpMultihop = &apipb.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.Multihop)}
	}
	for _, f := range p.PeerFamilies() {
		pp.AfiSafis = append(pp.AfiSafis, &apipb.AfiSafi{Config: &apipb.AfiSafiConfig{Family: familyOf(f == service.IPv4Unicast), Enabled: true}})
	}
	return pp
}

func familyOf(v4 bool) *apipb.Family {
	if v4 {
		return &apipb.Family{Afi: apipb.Family_AFI_IP, Safi: apipb.Family_SAFI_UNICAST}
	}
	return &apipb.Family{Afi: apipb.Family_AFI_IP6, Safi: apipb.Family_SAFI_UNICAST}
}

// path is r as GoBGP's API takes it. The next hop is left unspecified:
// GoBGP sends each peer the session's local address (next hop self).
func path(r Route) (*apipb.Path, error) {
	v4 := r.Prefix.Addr().Is4()
	nlri, err := anypb.New(&apipb.IPAddressPrefix{Prefix: r.Prefix.Addr().String(), PrefixLen: uint32(r.Prefix.Bits())})
	if err != nil {
		return nil, err
	}
	attrs := []proto{&apipb.OriginAttribute{Origin: 0}} // IGP
	if v4 {
		attrs = append(attrs, &apipb.NextHopAttribute{NextHop: "0.0.0.0"})
	} else {
		attrs = append(attrs, &apipb.MpReachNLRIAttribute{Family: familyOf(false), NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri}})
	}
	attrs = append(attrs, &apipb.MultiExitDiscAttribute{Med: r.MED})
	if len(r.Communities) > 0 {
		cs := make([]uint32, len(r.Communities))
		for i, c := range r.Communities {
			cs[i] = uint32(c)
		}
		attrs = append(attrs, &apipb.CommunitiesAttribute{Communities: cs})
	}
	if r.LocalPref != nil {
		attrs = append(attrs, &apipb.LocalPrefAttribute{LocalPref: *r.LocalPref})
	}
	p := &apipb.Path{Family: familyOf(v4), Nlri: nlri}
	for _, a := range attrs {
		x, err := anypb.New(a)
		if err != nil {
			return nil, err
		}
		p.Pattrs = append(p.Pattrs, x)
	}
	return p, nil
}

// proto is a protobuf message (anypb.New's argument).
type proto = protoreflect.ProtoMessage

func (g *goBGP) Announce(ctx context.Context, r Route) error {
	p, err := path(r)
	if err != nil {
		return fmt.Errorf("route %s: %w", r.Prefix, err)
	}
	if _, err := g.s.AddPath(ctx, &apipb.AddPathRequest{TableType: apipb.TableType_GLOBAL, Path: p}); err != nil {
		return fmt.Errorf("announce %s: %w", r.Prefix, err)
	}
	return nil
}

func (g *goBGP) Withdraw(ctx context.Context, pfx netip.Prefix) error {
	p, err := path(Route{Prefix: pfx})
	if err != nil {
		return fmt.Errorf("route %s: %w", pfx, err)
	}
	if err := g.s.DeletePath(ctx, &apipb.DeletePathRequest{TableType: apipb.TableType_GLOBAL, Family: p.Family, Path: p}); err != nil {
		return fmt.Errorf("withdraw %s: %w", pfx, err)
	}
	return nil
}

func (g *goBGP) Peers(ctx context.Context) ([]api.BGPPeer, error) {
	var out []api.BGPPeer
	err := g.s.ListPeer(ctx, &apipb.ListPeerRequest{EnableAdvertised: true}, func(p *apipb.Peer) {
		bp := api.BGPPeer{Address: p.GetConf().GetNeighborAddress(), AS: p.GetConf().GetPeerAsn()}
		st := p.GetState().GetSessionState()
		bp.State = strings.ToUpper(st.String())
		if st == apipb.PeerState_ESTABLISHED {
			bp.Since = p.GetTimers().GetState().GetUptime().AsTime()
		}
		for _, a := range p.GetAfiSafis() {
			bp.Sent += a.GetState().GetAdvertised()
			bp.Received += a.GetState().GetReceived()
		}
		out = append(out, bp)
	})
	slices.SortFunc(out, func(a, b api.BGPPeer) int { return strings.Compare(a.Address, b.Address) })
	return out, err
}

func (g *goBGP) Stop(ctx context.Context) error {
	err := g.s.StopBgp(ctx, &apipb.StopBgpRequest{})
	g.s.Stop()
	return err
}

// logAdapter hands GoBGP's log lines to slog; its debug chatter is
// dropped.
type logAdapter struct {
	log   *slog.Logger
	level gobgplog.LogLevel
}

func attrs(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

func (l *logAdapter) Panic(msg string, f gobgplog.Fields) { l.log.Error(msg, attrs(f)...); panic(msg) }
func (l *logAdapter) Fatal(msg string, f gobgplog.Fields) { l.log.Error(msg, attrs(f)...) }
func (l *logAdapter) Error(msg string, f gobgplog.Fields) { l.log.Error(msg, attrs(f)...) }
func (l *logAdapter) Warn(msg string, f gobgplog.Fields)  { l.log.Warn(msg, attrs(f)...) }
func (l *logAdapter) Info(msg string, f gobgplog.Fields)  { l.log.Info(msg, attrs(f)...) }
func (l *logAdapter) Debug(string, gobgplog.Fields)       {}
func (l *logAdapter) SetLevel(level gobgplog.LogLevel)    { l.level = level }
func (l *logAdapter) GetLevel() gobgplog.LogLevel         { return gobgplog.InfoLevel }
