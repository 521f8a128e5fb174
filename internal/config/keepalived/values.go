package keepalived

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-project/xlb/internal/service"
)

// converter turns the statement tree into the model, collecting every
// error and warning on the way.
type converter struct {
	errs  []error
	warns []service.Warning
	// defaults are global_defs' settings for the blocks that follow.
	defaults defaults
}

// defaults are what global_defs sets for every block that does not set it
// itself.
type defaults struct {
	vrrpVersion       int
	garpMasterDelay   time.Duration
	garpMasterRepeat  int
	garpMasterRefresh time.Duration
	garpRefreshRepeat int
	garpLowerRepeat   int
	garpLowerDelay    *time.Duration
	skipCheckAdvAddr  bool
	checkUnicastSrc   bool
	lowerPrioNoAdvert bool
	higherPrioAdvert  bool
	// iface is default_interface: the interface of an instance that
	// names none.
	iface string
	// scriptUser runs every script that names no user of its own:
	// MISC_CHECK, vrrp_script and notify. Empty leaves it to xlb's own
	// default, as keepalived's: keepalived_script if it exists, else root.
	scriptUser string
}

func (c *converter) errorf(n *node, format string, args ...any) {
	c.errs = append(c.errs, &service.Error{Pos: n.pos, Msg: fmt.Sprintf(format, args...)})
}

func (c *converter) warnf(n *node, format string, args ...any) {
	c.warns = append(c.warns, service.Warning{Pos: n.pos, Msg: fmt.Sprintf(format, args...)})
}

// unknown reports a keyword keepalived 2.2.7 does not have in this place.
// An unknown block is an error: it is most likely a misspelt
// virtual_server or real_server, and skipping it would serve less than the
// file says.
func (c *converter) unknown(n *node, where string) {
	if n.block {
		c.errorf(n, "unknown block %s in %s", n.kw, where)
		return
	}
	c.warnf(n, "unknown keyword %s in %s (ignored)", n.kw, where)
}

// ignored reports a keepalived keyword that xlb accepts but does not act on.
func (c *converter) ignored(n *node) {
	c.warnf(n, "%s is not used by xlb (ignored)", n.kw)
}

func (c *converter) unsupported(n *node, instead string) {
	c.errorf(n, "%s is not supported by xlb; %s", n.kw, instead)
}

// args checks that n is a simple statement with min..max arguments.
func (c *converter) args(n *node, min, max int) bool {
	if n.block {
		c.errorf(n, "%s does not take a block", n.kw)
		return false
	}
	switch {
	case len(n.args) < min && min == 1 && max == 1:
		c.errorf(n, "%s needs a value", n.kw)
	case len(n.args) < min:
		c.errorf(n, "%s needs at least %d values, got %d", n.kw, min, len(n.args))
	case len(n.args) > max && max <= 1:
		c.errorf(n, "%s takes %s, got %d", n.kw, plural(max, "value"), len(n.args))
	case len(n.args) > max:
		c.errorf(n, "%s takes at most %s, got %d", n.kw, plural(max, "value"), len(n.args))
	default:
		return true
	}
	return false
}

func plural(n int, what string) string {
	switch n {
	case 0:
		return "no " + what + "s"
	case 1:
		return "one " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func (c *converter) block(n *node) bool {
	if !n.block {
		c.errorf(n, "%s needs a block { ... }", n.kw)
	}
	return n.block
}

// str returns the single argument of n.
func (c *converter) str(n *node) (string, bool) {
	if !c.args(n, 1, 1) {
		return "", false
	}
	return n.args[0], true
}

// integer parses the single argument of n within min..max.
func (c *converter) integer(n *node, min, max int) (int, bool) {
	s, ok := c.str(n)
	if !ok {
		return 0, false
	}
	return c.intValue(n, n.kw, s, min, max)
}

func (c *converter) intValue(n *node, what, s string, min, max int) (int, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		c.errorf(n, "%s %q is not an integer", what, s)
		return 0, false
	}
	if v < int64(min) || v > int64(max) {
		c.errorf(n, "%s %d is outside %d..%d", what, v, min, max)
		return 0, false
	}
	return int(v), true
}

// maxTimer is keepalived's largest timer, 2^32-1 microseconds.
const maxTimer = math.MaxUint32 * time.Microsecond

// timer parses keepalived's TIMER: seconds with up to six decimals.
func (c *converter) timer(n *node) (time.Duration, bool) {
	s, ok := c.str(n)
	if !ok {
		return 0, false
	}
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > 6 || strings.Trim(whole+frac, "0123456789") != "" || len(whole) > 10 {
		c.errorf(n, "%s %q is not a number of seconds (up to 6 decimals)", n.kw, s)
		return 0, false
	}
	sec, _ := strconv.ParseInt(whole, 10, 64)
	us := int64(0)
	if frac != "" {
		us, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	d := time.Duration(sec)*time.Second + time.Duration(us)*time.Microsecond
	if d > maxTimer {
		c.errorf(n, "%s %s is above %s", n.kw, s, maxTimer)
		return 0, false
	}
	return d, true
}

// boolean parses keepalived's optional BOOL: no argument means true.
func (c *converter) boolean(n *node) (bool, bool) {
	if !c.args(n, 0, 1) {
		return false, false
	}
	if len(n.args) == 0 {
		return true, true
	}
	switch strings.ToLower(n.args[0]) {
	case "true", "on", "yes", "1":
		return true, true
	case "false", "off", "no", "0":
		return false, true
	}
	c.errorf(n, "%s %q is not a boolean (true/false, on/off, yes/no)", n.kw, n.args[0])
	return false, false
}

// addr parses an IP address written in what.
func (c *converter) addr(n *node, what, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		c.errorf(n, "%s: %q is not an IP address", what, s)
		return netip.Addr{}, false
	}
	return a, true
}

func (c *converter) port(n *node, what, s string) (uint16, bool) {
	v, ok := c.intValue(n, what, s, 0, 65535)
	return uint16(v), ok
}

// addrPort parses "IP [PORT]" arguments; a missing port is defPort.
func (c *converter) addrPort(n *node, defPort uint16) (netip.Addr, uint16, bool) {
	if len(n.args) == 0 || len(n.args) > 2 {
		c.errorf(n, "%s needs an address and optionally a port, got %d values", n.kw, len(n.args))
		return netip.Addr{}, 0, false
	}
	a, ok := c.addr(n, n.kw, n.args[0])
	if !ok {
		return a, 0, false
	}
	if len(n.args) == 1 {
		return a, defPort, true
	}
	p, ok := c.port(n, n.kw+" "+n.args[0]+" port", n.args[1])
	return a, p, ok
}
