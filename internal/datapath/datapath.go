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
	// of it. Pinned flows of another size or layout are not re-adopted.
	FlowTableSize uint32
	// ProbationSize is the capacity of each family's probation, where new
	// flows wait until they have lasted (FlowTableSize/4 if zero).
	ProbationSize uint32
	// Fresh removes maps an earlier run left pinned instead of adopting
	// them, so a daemon starts from its configuration alone.
	Fresh bool
	// KeepFlows exempts the flow table from Fresh, together with the
	// record of the backend ids its entries hold (see IDs): connections an
	// earlier run (or its still-attached program) placed keep their
	// backends, provided the caller gives the same backends the same ids.
	KeepFlows bool
	// LegacyIDs is the JSON file in which an xlb from before the
	// backend_ids map kept its ids; when that map is not pinned yet, the
	// file stands in for it once (see migrateIDs).
	LegacyIDs string
}

// mapNames are the pinned maps, as bpf/lb_maps.h names them.
var mapNames = append([]string{lbMapServices, lbMapMaglev, lbMapBackends, lbMapBackendIds, lbMapStats, lbMapCounters, lbMapVipFilter}, flowMapNames...)

// Datapath is a loaded xlb program with its maps.
type Datapath struct {
	objs   lbObjects
	pinDir string
	inner  *ebpf.MapSpec

	mu   sync.Mutex // serialises transactions and attach/close
	link link.Link

	// lock is the pin directory, flocked while this Datapath lives.
	lock *os.File
	// ids and nextID mirror the backend_ids map.
	ids    map[lbBackendRef]uint32
	nextID uint32

	// retired is a one-entry table stored in every slot whose table was
	// released; it holds no backend and no service points at it.
	retired *ebpf.Map

	hzOnce sync.Once // reads the tick rate on first use
	hz     float64
	hzErr  error

	timeouts Timeouts      // what the program applies (SetTimeouts)
	promote  time.Duration // how long a flow lasts in probation (SetPromotion)
}

// Load loads the program and opens its maps: maps pinned in PinDir by an
// earlier run are re-adopted with their contents, missing ones are created
// and pinned. It locks PinDir first, before any pin is read or removed,
// and fails with a *LockedError while another process holds it.
func Load(opts Options) (d *Datapath, err error) {
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
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("datapath: %w", err)
	}
	sizeFlowMaps(spec, opts.FlowTableSize, opts.ProbationSize)
	migrate := false
	if opts.Fresh {
		keep := false
		if opts.KeepFlows && allFit(opts.PinDir, spec, flowMapNames) {
			keep = fits(filepath.Join(opts.PinDir, lbMapBackendIds), spec.Maps[lbMapBackendIds])
			if !keep && opts.LegacyIDs != "" {
				_, err := os.Stat(opts.LegacyIDs)
				keep, migrate = err == nil, err == nil
			}
		}
		for _, name := range mapNames {
			if keep && (slices.Contains(flowMapNames, name) || name == lbMapBackendIds) {
				continue
			}
			if err := os.Remove(filepath.Join(opts.PinDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("datapath: remove stale pin: %w", err)
			}
		}
	}
	var cfg lbXlbConfig
	copy(cfg.Mac[:], opts.MAC)
	if err := spec.Variables[lbVarXlbCfg].Set(cfg); err != nil {
		return nil, fmt.Errorf("datapath: set config: %w", err)
	}
	d = &Datapath{pinDir: opts.PinDir, lock: lock, inner: spec.Maps[lbMapMaglev].InnerMap.Copy()}
	err = spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: opts.PinDir},
	})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("datapath: load: %+v", ve)
		}
		return nil, fmt.Errorf("datapath: load (pins in %s): %w", opts.PinDir, err)
	}
	ph := d.inner.Copy()
	ph.MaxEntries = 1
	if d.retired, err = ebpf.NewMap(ph); err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("datapath: placeholder table: %w", err)
	}
	if err := d.readIDs(); err != nil {
		d.Close()
		return nil, err
	}
	if migrate {
		if err := d.migrateIDs(opts.LegacyIDs); err != nil {
			d.Close()
			return nil, fmt.Errorf("datapath: backend ids of an earlier xlb: %w", err)
		}
	}
	if err := d.collectGarbage(); err != nil {
		d.Close()
		return nil, err
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

// collectGarbage retires Maglev tables no service points at: the spare
// slot of a transaction that an earlier process did not finish.
func (d *Datapath) collectGarbage() error {
	used := map[uint32]bool{}
	var k lbVipKey
	var v lbVipMeta
	it := d.objs.Services.Iterate()
	for it.Next(&k, &v) {
		used[v.Table] = true
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("datapath: read services: %w", err)
	}
	var slot uint32
	var id ebpf.MapID
	var stale []uint32
	mit := d.objs.Maglev.Iterate()
	for mit.Next(&slot, &id) {
		if !used[slot] {
			stale = append(stale, slot)
		}
	}
	if err := mit.Err(); err != nil {
		return fmt.Errorf("datapath: read maglev: %w", err)
	}
	return d.retire(stale)
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

// fits reports whether the map pinned at path is what spec describes, so
// that loading adopts it; one of another size or layout is replaced.
func fits(path string, spec *ebpf.MapSpec) bool {
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return false
	}
	defer m.Close()
	return m.Type() == spec.Type && m.KeySize() == spec.KeySize && m.ValueSize() == spec.ValueSize && m.MaxEntries() == spec.MaxEntries
}

// allFit reports whether every map of names is pinned in dir as spec
// describes it.
func allFit(dir string, spec *ebpf.CollectionSpec, names []string) bool {
	for _, name := range names {
		if !fits(filepath.Join(dir, name), spec.Maps[name]) {
			return false
		}
	}
	return true
}

// linkPin is the name of the pinned XDP link for an attach mode. The mode
// is part of the name because the kernel does not report it: a run asking
// for another mode must attach afresh.
func linkPin(mode Mode) string { return "xdp_link_" + mode.String() }

// modes are the attach modes, each with a link pin of its own.
var modes = []Mode{ModeAuto, ModeNative, ModeGeneric}

// Attach attaches the program to the interface through a pinned link. The
// pin keeps the program attached, with the maps it uses, when the process
// dies without detaching (a crash, SIGKILL, the OOM killer), as IPVS keeps
// forwarding when keepalived dies: established connections are not reset
// by the host taking over the VIP traffic. A link an earlier run left for
// the same interface and mode gets this program in place, atomically, so a
// restart forwards without a gap; any other leftover link is detached.
func (d *Datapath) Attach(iface string, mode Mode) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.link != nil {
		return fmt.Errorf("datapath: already attached")
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("datapath: interface %s: %w", iface, err)
	}
	pin := filepath.Join(d.pinDir, linkPin(mode))
	if l := d.adoptLink(pin, ifi.Index); l != nil {
		d.link = l
		return nil
	}
	var flags link.XDPAttachFlags
	switch mode {
	case ModeNative:
		flags = link.XDPDriverMode
	case ModeGeneric:
		flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: d.objs.XlbXdp, Interface: ifi.Index, Flags: flags})
	if err != nil {
		return fmt.Errorf("datapath: attach to %s (%s mode): %w", iface, mode, err)
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return fmt.Errorf("datapath: attach to %s: pin link: %w", iface, err)
	}
	d.link = l
	return nil
}

// adoptLink updates the link pinned at pin to this program when it is an
// XDP link on ifindex, and detaches every other XDP link pinned in the
// directory (another interface or mode) so the attach that follows finds
// the interface free. It returns the adopted link, or nil.
func (d *Datapath) adoptLink(pin string, ifindex int) link.Link {
	for _, m := range modes {
		path := filepath.Join(d.pinDir, linkPin(m))
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			continue
		}
		if path == pin {
			info, err := l.Info()
			if err == nil && info.Type == link.XDPType && info.XDP() != nil && int(info.XDP().Ifindex) == ifindex && l.Update(d.objs.XlbXdp) == nil {
				return l
			}
		}
		_ = l.Unpin()
		_ = l.Close()
	}
	return nil
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
	errs = append(errs, d.objs.Close())
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
	for _, m := range []*ebpf.Map{d.objs.Services, d.objs.Maglev, d.objs.Backends, d.objs.BackendIds, d.objs.Stats, d.objs.Counters, d.objs.VipFilter, d.objs.Flows4, d.objs.Flows6, d.objs.Probation4, d.objs.Probation6} {
		if err := m.Unpin(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, m := range modes {
		if err := os.Remove(filepath.Join(d.pinDir, linkPin(m))); err != nil && !errors.Is(err, os.ErrNotExist) {
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
