package datapath

// Two-arm topologies. Clients may arrive on one interface and real servers
// sit behind another: xlb runs a copy of the program on every interface it
// is given (each copy holds its interface's MAC as a constant, so it is
// loaded per interface), all of them sharing every map. A backend names
// the interface its real server is on; a frame for it that came in on
// another interface leaves by XDP_REDIRECT through the tx_ports devmap,
// with that interface's MAC as its source (the ifaces map).

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// MaxInterfaces is how many interfaces one program serves.
const MaxInterfaces = 64

// port is an interface beyond Attach's first, with its copy of the
// program, loaded with the interface's own MAC and sharing every map, and
// the link attaching it, pinned under a name of its own (portSuffix).
type port struct {
	name  string
	mode  Mode
	index int
	mac   net.HardwareAddr
	objs  *progObjs
	link  link.Link
}

func (p *port) close() error {
	var errs []error
	if p.link != nil {
		errs = append(errs, p.link.Close())
		p.link = nil
	}
	return errors.Join(append(errs, p.objs.lbPrograms.Close())...)
}

// portSuffix is what the name of an interface's link pin adds to
// linkPin(mode): nothing for Attach's interface (so that a run of an xlb
// that served one interface is taken over in place), "@NAME" for the
// others. bpffs refuses names with dots, which interface names may have:
// "." is written "%2e" (and "%" "%25", so two names never meet).
func portSuffix(name string) string {
	if name == "" {
		return ""
	}
	return "@" + strings.NewReplacer("%", "%25", ".", "%2e").Replace(name)
}

// attachPort loads p's program for its interface as it is now and lets
// frames out through it, then attaches it.
func (d *Datapath) attachPort(p *port) error {
	old, prev := p.index, p.objs
	if err := d.preparePort(p); err != nil {
		return err
	}
	if err := d.linkPort(p); err != nil {
		p.objs.lbPrograms.Close()
		p.objs = prev
		return err
	}
	if prev != nil {
		prev.lbPrograms.Close()
	}
	return d.dropTxPort(old, p.index)
}

// preparePort reads p's interface, loads its copy of the program and lets
// frames out through it: everything but the attachment.
func (d *Datapath) preparePort(p *port) error {
	ifi, err := net.InterfaceByName(p.name)
	if err != nil {
		return fmt.Errorf("datapath: interface %s: %w", p.name, err)
	}
	objs, err := d.loadFor(ifi.HardwareAddr)
	if err != nil {
		return fmt.Errorf("datapath: interface %s: %w", p.name, err)
	}
	if err := d.addTxPort(ifi.Index, ifi.HardwareAddr); err != nil {
		objs.lbPrograms.Close()
		return err
	}
	p.objs, p.index, p.mac = objs, ifi.Index, ifi.HardwareAddr
	return nil
}

// linkPort attaches p's prepared program to its interface.
func (d *Datapath) linkPort(p *port) error {
	ifi := &net.Interface{Index: p.index, Name: p.name, HardwareAddr: p.mac}
	l, err := d.attachLink(p.objs.XlbXdp, ifi, p.mode, p.name)
	if err != nil {
		return err
	}
	p.link = l
	return nil
}

func (d *Datapath) port(name string) *port {
	for _, p := range d.ports {
		if p.name == name {
			return p
		}
	}
	return nil
}

// addTxPort lets frames out through interface index, with mac as their
// source: tx_ports first, so that a program that finds the interface in
// ifaces finds it in tx_ports too.
func (d *Datapath) addTxPort(index int, mac net.HardwareAddr) error {
	var v lbXlbIface
	copy(v.Mac[:], mac)
	if err := d.objs.TxPorts.Update(uint32(index), uint32(index), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("datapath: interface %d: tx port: %w", index, err)
	}
	if err := d.objs.Ifaces.Update(uint32(index), v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("datapath: interface %d: tx mac: %w", index, err)
	}
	return nil
}

// dropTxPort forgets the index old an interface had, now index: it was
// deleted and created again. tx_ports forgets it at once (the kernel has
// already); ifaces keeps the entry until the next Apply, which moves the
// backends behind the interface to its new index: until then their frames
// are redirected to a port that is gone and dropped, which TCP
// retransmits, rather than passed to the kernel, which holds the VIP and
// would reset the connections.
func (d *Datapath) dropTxPort(old, index int) error {
	if old == 0 || old == index {
		return nil
	}
	if err := d.objs.TxPorts.Delete(uint32(old)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("datapath: interface %d: forget: %w", old, err)
	}
	d.staleIfaces = append(d.staleIfaces, uint32(old))
	return nil
}

// Interfaces are the indexes of the interfaces the program is attached
// to, by name.
func (d *Datapath) Interfaces() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	if d.link != nil {
		out[d.iface] = d.index
	}
	for _, p := range d.ports {
		out[p.name] = p.index
	}
	return out
}

// Port is one interface the program is attached to, as internal/ifwatch
// fits it: Attach's first or one of its further ones.
type Port struct {
	d    *Datapath
	name string
}

// Port returns the interface called name.
func (d *Datapath) Port(name string) Port { return Port{d: d, name: name} }

// Reattach attaches the program once more to the interface, deleted and
// created again with another index; the maps, and so the flows, stay.
func (p Port) Reattach() error {
	d := p.d
	d.mu.Lock()
	if d.iface == p.name || d.port(p.name) == nil {
		d.mu.Unlock()
		return d.Reattach()
	}
	defer d.mu.Unlock()
	pt := d.port(p.name)
	if pt.link != nil {
		pt.link.Close() // attachLink replaces its pin
		pt.link = nil
	}
	return d.attachPort(pt)
}

// SetMAC gives the interface's program its new MAC (see Datapath.SetMAC),
// and frames sent out through it the new source.
func (p Port) SetMAC(mac net.HardwareAddr) error {
	d := p.d
	d.mu.Lock()
	pt := d.port(p.name)
	if pt == nil || d.iface == p.name {
		d.mu.Unlock()
		return d.SetMAC(mac)
	}
	defer d.mu.Unlock()
	// The entry first, as Datapath.SetMAC says why.
	if err := d.addTxPort(pt.index, mac); err != nil {
		return err
	}
	objs, err := d.loadFor(mac)
	if err != nil {
		return fmt.Errorf("datapath: interface %s: %w", p.name, err)
	}
	if err := pt.link.Update(objs.XlbXdp); err != nil {
		objs.lbPrograms.Close()
		return fmt.Errorf("datapath: interface %s: set MAC %s: %w", p.name, mac, err)
	}
	old := pt.objs
	pt.objs, pt.mac = objs, mac
	return old.lbPrograms.Close()
}

// dropStalePorts detaches the links an earlier run pinned for interfaces
// beyond the first that this run does not serve. Each is opened before its
// pin goes, so that the last reference is a descriptor, whose close
// detaches at once (see Unpin).
func (d *Datapath) dropStalePorts() error {
	keep := map[string]bool{}
	for _, p := range d.ports {
		for _, m := range modes {
			keep[linkPin(m)+portSuffix(p.name)] = true
		}
	}
	paths, _ := filepath.Glob(filepath.Join(d.pinDir, linkPrefix+"*@*"))
	var errs []error
	for _, path := range paths {
		if keep[filepath.Base(path)] {
			continue
		}
		l, _ := link.LoadPinnedLink(path, nil)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("datapath: detach %s: %w", filepath.Base(path), err))
		}
		if l != nil {
			l.Close()
		}
	}
	return errors.Join(errs...)
}
