// Package datapath owns the XDP program and every BPF map of xlb: it loads
// the bpf2go object, pins and re-adopts the maps, attaches the program to
// an interface and changes map contents in transactions. It is the only
// package that imports cilium/ebpf.
package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Limits of the maps, as bpf/lb_consts.h sets them.
const (
	// MaxServices bounds service ids: a valid id is in [1, MaxServices).
	MaxServices = 4096
	// MaxBackends bounds backend ids: a valid id is in [1, MaxBackends).
	MaxBackends = 65536
	// MaxTableSize is the largest Maglev table the data path accepts.
	MaxTableSize = 131071
	// DefaultFlowTableSize is the flow table's size unless Options say
	// otherwise.
	DefaultFlowTableSize = 262144
	// DefaultFragmentTableSize is how many fragmented datagrams the
	// program follows at once unless Options say otherwise.
	DefaultFragmentTableSize = 8192
	// DefaultPinDir is where the maps are pinned unless Options say
	// otherwise.
	DefaultPinDir = "/sys/fs/bpf/xlb"
)

// The program's own constants come from the enums of bpf/lb_consts.h as
// bpf2go generates them, typed for the fields and shifts they go into, so
// Go and C cannot disagree.
const (
	afInet         = uint8(lbXlbFamilyXLB_AF_INET)
	afInet6        = uint8(lbXlbFamilyXLB_AF_INET6)
	svcFlagHashSrc = uint32(lbXlbSvcFlagsXLB_SVC_F_HASH_SRC)
	backendPresent = uint16(lbXlbBeFlagsXLB_BE_F_PRESENT)
	backendTunIPIP = uint16(lbXlbBeFlagsXLB_BE_F_TUN_IPIP)
	backendTunGUE  = uint16(lbXlbBeFlagsXLB_BE_F_TUN_GUE)
	backendGUECsum = uint16(lbXlbBeFlagsXLB_BE_F_GUE_CSUM)
	atimeShift     = uint(lbXlbAtimeXLB_ATIME_SHIFT)
)

const (
	protoTCP        = 6
	protoUDP        = 17
	bpffsMagic      = 0xcafe4a11
	conventionalFS  = "/sys/fs/bpf"
	pinDirMode      = 0o700
	macLen          = 6
	slotsPerService = 2
)

// Options configure Load.
type Options struct {
	// PinDir is the bpffs directory of the pinned maps (DefaultPinDir if
	// empty). It is created, and a bpffs mounted, when needed.
	PinDir string
	// MAC is the interface's own address: only VIP frames addressed to
	// it are forwarded, with it as their source. Nil accepts any
	// destination and keeps it as the source.
	MAC net.HardwareAddr
	// FlowTableSize is the capacity of each family's flow table
	// (DefaultFlowTableSize if zero), not counting probation, a quarter
	// of it. A pinned flow table of another size is copied into one of
	// this size.
	FlowTableSize uint32
	// ProbationSize is the capacity of each family's probation, where new
	// flows wait until they have lasted (FlowTableSize/4 if zero).
	ProbationSize uint32
	// FragmentTableSize is how many fragmented datagrams may be in flight
	// with their later fragments still to come
	// (DefaultFragmentTableSize if zero): beyond it the least recently
	// used record goes, and that datagram's later fragments are passed to
	// the kernel. The table starts empty on every Load.
	FragmentTableSize uint32
	// KeepFlows adopts the flow table an earlier run left pinned, together
	// with the record of the backend ids its entries hold (see IDs):
	// connections that run (or its still-attached program) placed keep
	// their backends, provided the caller gives the same backends the same
	// ids. Without it the flow table starts empty.
	KeepFlows bool
	// LegacyIDs is the JSON file in which an xlb from before the
	// backend_ids map kept its ids; when that map is not pinned, the file
	// stands in for it (see migrateIDs).
	LegacyIDs string
}

// mapNames are the pinned maps, as bpf/lb_maps.h names them. The
// fragment table is pinned for bpftool's sake but, like the counters, is
// new on every Load: a datagram in flight across a restart loses its later
// fragments to the kernel, no connection is lost.
var mapNames = append([]string{lbMapServices, lbMapMaglev, lbMapBackends, lbMapBackendIds, lbMapStats, lbMapCounters, lbMapVipFilter, lbMapNexthops, lbMapFrags,
	lbMapSvcVlan, lbMapTxPorts, lbMapIfaces}, flowMapNames...)

// Datapath is a loaded xlb program with its maps.
type Datapath struct {
	objs   lbObjects
	pinDir string
	inner  *ebpf.MapSpec

	mu   sync.Mutex // serialises transactions and attach/close
	link link.Link
	// tunGen is the last tunnel backend generation given out (nextGen).
	tunGen uint8
	// staleIfaces are interface indexes gone, kept in ifaces until the
	// next Apply (see dropTxPort).
	staleIfaces []uint32
	// iface and mode are what Attach attached to, for Reattach; index
	// is the interface's index then.
	iface string
	mode  Mode
	index int
	// ports are the further interfaces Attach attached to.
	ports []*port

	// lock is the pin directory, flocked while this Datapath lives.
	lock *os.File
	// ids and nextID mirror the backend_ids map.
	ids    map[lbBackendRef]uint32
	nextID uint32
	// adopted is the flow table taken over from an earlier run when it was
	// copied rather than shared (another size): Pin copies what that run's
	// program placed since Load once more, right before the switch.
	adopted map[string]*ebpf.Map
	// legacyIDs is the migrated JSON file, removed once Pin has recorded
	// its ids in the pinned map.
	legacyIDs string

	// spec is what the program was loaded from, for SetMAC.
	spec *ebpf.CollectionSpec

	// retired is a one-entry table stored in every slot whose table was
	// released; it holds no backend and no service points at it.
	retired *ebpf.Map

	hzOnce sync.Once // reads the tick rate on first use
	hz     float64
	hzErr  error

	timeouts Timeouts      // what the program applies (SetTimeouts)
	promote  time.Duration // how long a flow lasts in probation (SetPromotion)
}

// Load loads the program and its maps without changing anything an
// earlier run left in PinDir: every map is new and unpinned but the flow
// table (with KeepFlows), which is shared with the earlier run's program,
// or copied when its size changed, and the backend ids recorded with it,
// which are copied. Nothing is pinned or attached until Attach and Pin, so
// a start that fails before them leaves the earlier run's program
// forwarding with its maps exactly as it found them.
//
// Load locks PinDir first, before any pin is read, and fails with a
// *LockedError while another process holds it. It refuses, with an
// *IncompatibleError, a pinned flow table or id record whose layout this
// build cannot read while a program may still be forwarding with it: it
// would otherwise start that program's connections afresh.
func Load(opts Options) (_ *Datapath, err error) {
	if opts.PinDir == "" {
		opts.PinDir = DefaultPinDir
	}
	if opts.FlowTableSize == 0 {
		opts.FlowTableSize = DefaultFlowTableSize
	}
	if opts.MAC != nil && len(opts.MAC) != macLen {
		return nil, fmt.Errorf("datapath: source MAC %s is not an Ethernet address", opts.MAC)
	}
	if err := ensureBPFFS(opts.PinDir); err != nil {
		return nil, err
	}
	lock, err := lockDir(opts.PinDir)
	if err != nil {
		return nil, err
	}
	d := &Datapath{pinDir: opts.PinDir, lock: lock}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("datapath: %w", err)
	}
	sizeFlowMaps(spec, opts.FlowTableSize, opts.ProbationSize)
	if opts.FragmentTableSize != 0 {
		spec.Maps[lbMapFrags].MaxEntries = opts.FragmentTableSize
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	var prev previous
	if opts.KeepFlows {
		if prev, err = d.previousRun(spec, opts.LegacyIDs); err != nil {
			return nil, err
		}
		defer func() { prev.close() }() // what Load did not keep
	}
	var cfg lbXlbConfig
	copy(cfg.Mac[:], opts.MAC)
	if err := spec.Variables[lbVarXlbCfg].Set(cfg); err != nil {
		return nil, fmt.Errorf("datapath: set config: %w", err)
	}
	d.inner = spec.Maps[lbMapMaglev].InnerMap.Copy()
	d.spec = spec.Copy()
	// A pinned flow map of this size is shared with the program still
	// running; one of another size is copied below.
	replace := map[string]*ebpf.Map{}
	for name, m := range prev.flows {
		if m.MaxEntries() == spec.Maps[name].MaxEntries {
			replace[name] = m
			delete(prev.flows, name)
		} else {
			prev.copy[name] = m
		}
	}
	err = spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{MapReplacements: replace})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("datapath: load: %+v", ve)
		}
		return nil, fmt.Errorf("datapath: load: %w", err)
	}
	ph := d.inner.Copy()
	ph.MaxEntries = 1
	if d.retired, err = ebpf.NewMap(ph); err != nil {
		return nil, fmt.Errorf("datapath: placeholder table: %w", err)
	}
	d.ids = map[lbBackendRef]uint32{}
	for name, old := range prev.copy {
		if err := copyFlows(old, d.mapsByName()[name]); err != nil {
			return nil, err
		}
		delete(prev.flows, name)
	}
	d.adopted, prev.copy = prev.copy, nil
	for _, m := range replace {
		m.Close() // the program holds its own reference
	}
	if prev.ids != nil {
		if err := d.recordIDs(prev.ids); err != nil {
			return nil, err
		}
		d.legacyIDs = prev.legacy
	}
	if err := d.syncFilter(); err != nil {
		d.Close()
		return nil, err
	}
	d.promote = DefaultPromotion
	if err := d.SetTimeouts(DefaultTimeouts); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// ensureBPFFS makes dir a directory on a bpffs, mounting one at
// /sys/fs/bpf (or, for another path, at dir itself) when there is none.
func ensureBPFFS(dir string) error {
	isBPFFS := func(p string) bool {
		var st unix.Statfs_t
		return unix.Statfs(p, &st) == nil && uint32(st.Type) == bpffsMagic
	}
	mount := func(p string) error {
		if err := unix.Mount("bpf", p, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("datapath: mount bpffs at %s: %w", p, err)
		}
		return nil
	}
	if _, err := os.Stat(dir); err == nil {
		if isBPFFS(dir) {
			return nil
		}
		// A bpffs mounted over files would hide them until it goes:
		// the directory was given by mistake.
		if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
			return fmt.Errorf("datapath: pin directory %s is not on a bpffs and not empty: refusing to mount a bpffs over it", dir)
		}
		return mount(dir)
	}
	parent := filepath.Dir(dir)
	if !isBPFFS(parent) {
		if parent == conventionalFS {
			if err := mount(parent); err != nil {
				return err
			}
		} else {
			if err := os.MkdirAll(dir, pinDirMode); err != nil {
				return fmt.Errorf("datapath: pin directory: %w", err)
			}
			return mount(dir)
		}
	}
	if err := os.Mkdir(dir, pinDirMode); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("datapath: pin directory: %w", err)
	}
	return nil
}

// Mode is how the program is attached.
type Mode int

// Attach modes: Auto lets the kernel choose (native where the driver
// supports it).
const (
	ModeAuto Mode = iota
	ModeNative
	ModeGeneric
)

// ParseMode reads "auto", "native" or "generic".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "auto", "":
		return ModeAuto, nil
	case "native", "driver":
		return ModeNative, nil
	case "generic", "skb":
		return ModeGeneric, nil
	}
	return 0, fmt.Errorf("xdp mode %q: want native, generic or auto", s)
}

func (m Mode) String() string {
	return [...]string{"auto", "native", "generic"}[m]
}

// linkPin is the name of the pinned XDP link for an attach mode. The mode
// is part of the name because the kernel does not report it: a run asking
// for another mode must attach afresh.
func linkPin(mode Mode) string { return linkPrefix + mode.String() }

// linkPrefix starts the name of every pinned XDP link.
const linkPrefix = "xdp_link_"

// modes are the attach modes, each with a link pin of its own.
var modes = []Mode{ModeAuto, ModeNative, ModeGeneric}

// Attach attaches the program to the interface through a pinned link. The
// pin keeps the program attached, with the maps it uses, when the process
// ends without Unpin (a crash, SIGKILL, the OOM killer, a restart), as
// IPVS keeps forwarding when keepalived dies: established connections are
// not reset by the host taking over the VIP traffic. A link an earlier run
// left for the same interface and mode gets this program in place,
// atomically, so a restart forwards without a gap. A link left for another
// interface is detached only once this one is attached; one for this
// interface in another mode has to go first, as an interface takes one
// XDP program.
//
// more are further interfaces, with real servers behind them: each gets a
// copy of the program loaded with its own MAC, every map shared, attached
// through a link of its own with the same rules. Every interface is made one frames may leave
// by before any program takes over, so that no program, this run's or
// the earlier run's, ever finds a backend's interface missing.
func (d *Datapath) Attach(iface string, mode Mode, more ...string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.link != nil {
		return fmt.Errorf("datapath: already attached")
	}
	if len(more)+1 > MaxInterfaces {
		return fmt.Errorf("datapath: %d interfaces: at most %d", len(more)+1, MaxInterfaces)
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("datapath: interface %s: %w", iface, err)
	}
	var ports []*port
	defer func() {
		for _, p := range ports {
			if p.link == nil {
				p.objs.lbPrograms.Close()
			}
		}
	}()
	for _, name := range more {
		if name == iface || slices.ContainsFunc(ports, func(p *port) bool { return p.name == name }) {
			return fmt.Errorf("datapath: interface %s: given twice", name)
		}
		p := &port{name: name, mode: mode}
		if err := d.preparePort(p); err != nil {
			return err
		}
		ports = append(ports, p)
	}
	if err := d.addTxPort(ifi.Index, ifi.HardwareAddr); err != nil {
		return err
	}
	d.iface, d.mode = iface, mode
	if d.link, err = d.attachLink(d.objs.XlbXdp, ifi, mode, ""); err != nil {
		return err
	}
	d.index = ifi.Index
	for _, p := range ports {
		if err := d.linkPort(p); err != nil {
			return err
		}
		d.ports = append(d.ports, p)
	}
	return nil
}

// attachLink attaches prog to ifi in mode through a link pinned under the
// name linkPin(mode)+portSuffix(port). A link pinned under that name on ifi
// gets prog in place; any other pinned link on ifi is detached first (an
// interface takes one XDP program); links under the names of port, in
// whatever mode, on other interfaces (an earlier run on another interface)
// are detached once prog is attached.
func (d *Datapath) attachLink(prog *ebpf.Program, ifi *net.Interface, mode Mode, port string) (link.Link, error) {
	pin := filepath.Join(d.pinDir, linkPin(mode)+portSuffix(port))
	ours := map[string]bool{}
	for _, m := range modes {
		ours[filepath.Join(d.pinDir, linkPin(m)+portSuffix(port))] = true
	}
	// stale links are unpinned once prog is attached, unless their pin is
	// the one prog's link takes (an interface deleted and created again):
	// unpinning it then would remove the new link's pin.
	stale := map[string]link.Link{}
	defer func() {
		for _, l := range stale {
			l.Close()
		}
	}()
	var attached link.Link
	paths, _ := filepath.Glob(filepath.Join(d.pinDir, linkPrefix+"*"))
	for _, path := range paths {
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			continue
		}
		ifindex := linkIfindex(l)
		switch {
		case path == pin && ifindex == ifi.Index && attached == nil && l.Update(prog) == nil:
			attached = l
		case ifindex == ifi.Index:
			_ = l.Unpin()
			l.Close()
		case ours[path]:
			stale[path] = l
		default:
			l.Close()
		}
	}
	if attached == nil {
		var flags link.XDPAttachFlags
		switch mode {
		case ModeNative:
			flags = link.XDPDriverMode
		case ModeGeneric:
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: flags})
		if err != nil {
			return nil, fmt.Errorf("datapath: attach to %s (%s mode): %w", ifi.Name, mode, err)
		}
		// A stale link of another mode may hold this mode's pin name
		// only if it was renamed by hand; replace whatever is there.
		_ = os.Remove(pin)
		if err := l.Pin(pin); err != nil {
			l.Close()
			return nil, fmt.Errorf("datapath: attach to %s: pin link: %w", ifi.Name, err)
		}
		attached = l
	}
	for path, l := range stale {
		if path != pin {
			_ = l.Unpin()
		}
	}
	return attached, nil
}

// Reattach attaches the program once more to the interface Attach named,
// after it was deleted (which detached the program) and created again with
// another index. The maps, and so the flows, are the ones it had.
func (d *Datapath) Reattach() error {
	d.mu.Lock()
	if d.link != nil {
		d.link.Close() // Attach replaces its pin
		d.link = nil
	}
	iface, mode, old := d.iface, d.mode, d.index
	d.mu.Unlock()
	if err := d.Attach(iface, mode); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dropTxPort(old, d.index)
}

// SetMAC makes the program take frames addressed to mac, and send them
// with mac as their source: the interface's address changed under it (a
// bond failed over, `ip link set address`). The address is a constant of
// the program, which keeps the check off the per-packet map lookups, so the
// program is loaded again with every map shared and swapped into the link
// with one update: no frame sees a mix and no flow is lost.
func (d *Datapath) SetMAC(mac net.HardwareAddr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// First the interface's entry, which the running program checks a
	// frame against when it does not match its own constant: loading a
	// program takes tens of milliseconds, in which clients that learnt
	// the new MAC would otherwise reach the kernel.
	if d.link != nil {
		if err := d.addTxPort(d.index, mac); err != nil {
			return err
		}
	}
	objs, err := d.loadFor(mac)
	if err != nil {
		return err
	}
	if d.link != nil {
		if err := d.link.Update(objs.XlbXdp); err != nil {
			objs.lbPrograms.Close()
			return fmt.Errorf("datapath: set MAC %s: %w", mac, err)
		}
	}
	old := d.objs.lbPrograms
	d.objs.lbPrograms, d.objs.lbVariables = objs.lbPrograms, objs.lbVariables
	return old.Close()
}

// progObjs are a copy of the program loaded for one interface, with the
// variables of its own.
type progObjs struct {
	lbPrograms
	lbVariables
}

// loadFor loads the program again for an interface whose MAC is mac, with
// every map shared, and gives it the current settings (timeouts,
// promotion), which live in each copy's own data.
func (d *Datapath) loadFor(mac net.HardwareAddr) (*progObjs, error) {
	if len(mac) != macLen {
		return nil, fmt.Errorf("datapath: MAC %s is not an Ethernet address", mac)
	}
	spec := d.spec.Copy()
	var cfg lbXlbConfig
	copy(cfg.Mac[:], mac)
	if err := spec.Variables[lbVarXlbCfg].Set(cfg); err != nil {
		return nil, fmt.Errorf("datapath: set MAC %s: %w", mac, err)
	}
	var objs progObjs
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: d.mapsByName()}); err != nil {
		return nil, fmt.Errorf("datapath: load for MAC %s: %w", mac, err)
	}
	if err := writeSettings(objs.Settings, d.timeouts, d.promote); err != nil {
		objs.lbPrograms.Close()
		return nil, fmt.Errorf("datapath: load for MAC %s: %w", mac, err)
	}
	return &objs, nil
}

// linkIfindex is the interface an XDP link is attached to, 0 when it is
// not an XDP link or its interface is gone.
func linkIfindex(l link.Link) int {
	info, err := l.Info()
	if err != nil || info.Type != link.XDPType || info.XDP() == nil {
		return 0
	}
	return int(info.XDP().Ifindex)
}

// Close releases the program and the maps. A program attached by Attach
// stays attached through its pinned link until Unpin: this is also what a
// crash leaves behind.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if d.link != nil {
		errs = append(errs, d.link.Close())
		d.link = nil
	}
	for _, p := range d.ports {
		errs = append(errs, p.close())
	}
	d.ports = nil
	errs = append(errs, d.objs.Close())
	for _, m := range d.adopted {
		errs = append(errs, m.Close())
	}
	if d.retired != nil {
		errs = append(errs, d.retired.Close())
	}
	if d.lock != nil {
		errs = append(errs, d.lock.Close())
		d.lock = nil
	}
	return errors.Join(errs...)
}

// Unpin removes the pins, the XDP link's too, and the pin directory: the
// maps go away with their last reference, and the program detaches once
// the link is also closed. Unpin before Close: the kernel releases a link
// whose last reference was a pin from a work queue, a moment later, but
// one whose last reference was a descriptor at once.
func (d *Datapath) Unpin() error {
	var errs []error
	names := slices.Clone(mapNames)
	links, _ := filepath.Glob(filepath.Join(d.pinDir, linkPrefix+"*"))
	for _, l := range links {
		names = append(names, filepath.Base(l))
	}
	for _, name := range names {
		if err := os.Remove(filepath.Join(d.pinDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(d.pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ServiceKey names a service as the program looks it up.
type ServiceKey struct {
	Addr  netip.Addr
	Port  uint16 // 0: every port of Addr
	Proto uint8  // 6 (TCP) or 17 (UDP)
}

func (k ServiceKey) String() string {
	p := "tcp"
	if k.Proto == protoUDP {
		p = "udp"
	} else if k.Proto != protoTCP {
		p = fmt.Sprintf("proto%d", k.Proto)
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.Addr, k.Port), p)
}

func (k ServiceKey) validate() error {
	if !k.Addr.IsValid() || k.Addr.Zone() != "" {
		return fmt.Errorf("service %s: invalid address", k)
	}
	if k.Proto != protoTCP && k.Proto != protoUDP {
		return fmt.Errorf("service %s: protocol must be tcp or udp", k)
	}
	return nil
}

func (k ServiceKey) bpf() lbVipKey {
	var v lbVipKey
	a := k.Addr.Unmap() // a VIP written as ::ffff:192.0.2.10 is the IPv4 one
	v.Addr = addrBytes(a, family(a))
	v.Port = htons(k.Port)
	v.Proto = k.Proto
	v.Family = family(a)
	return v
}

func (v lbVipKey) key() ServiceKey {
	return ServiceKey{Addr: getAddr(v.Addr, v.Family), Port: ntohs(v.Port), Proto: v.Proto}
}

// Flow is a transport 5-tuple as the data path keys it.
type Flow struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8 // 6 (TCP) or 17 (UDP)
}

// addrBytes is an address as the program's 16-byte fields hold it for
// family fam: IPv4 in the first 4 bytes and the rest zero, IPv6 as its 16
// bytes (an IPv4-mapped IPv6 address stays IPv6, as it is on the wire).
func addrBytes(a netip.Addr, fam uint8) [16]byte {
	if fam == afInet {
		var b [16]byte
		v4 := a.Unmap().As4()
		copy(b[:], v4[:])
		return b
	}
	return a.As16()
}

// family is the program's family of a flow or service address: IPv4 only
// for a plain IPv4 address.
func family(a netip.Addr) uint8 {
	if a.Is4() {
		return afInet
	}
	return afInet6
}

func getAddr(b [16]byte, fam uint8) netip.Addr {
	if fam == afInet {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// htons turns a host-order port into the uint16 whose in-memory bytes
// are the port in network order, as the program's __be16 fields hold it.
func htons(p uint16) uint16 { return p<<8 | p>>8 }
func ntohs(p uint16) uint16 { return p<<8 | p>>8 }
