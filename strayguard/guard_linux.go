//go:build linux

package strayguard

import (
	"encoding/binary"
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
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Program names, as the kernel lists them (bpftool prog show).
const (
	ingressName = "stray_ingress"
	egressName  = "stray_egress"
)

// Guard is the pair of programs attached to one interface for a set of
// server ports, and the maps they share.
type Guard struct {
	mu      sync.Mutex
	objs    guardObjects
	links   [2]link.Link // ingress, egress
	ifindex int
	iface   string
	ports   []uint16
	pinDir  string
	lock    *os.File
	adopted bool
	closed  bool
}

// direction is one of the two attach points.
type direction struct {
	name   string // of the link's pin
	attach ebpf.AttachType
	prog   func(*guardObjects) *ebpf.Program
}

var directions = [2]direction{
	{"ingress", ebpf.AttachTCXIngress, func(o *guardObjects) *ebpf.Program { return o.StrayIngress }},
	{"egress", ebpf.AttachTCXEgress, func(o *guardObjects) *ebpf.Program { return o.StrayEgress }},
}

// Attach loads the programs and attaches them at tcx ingress and egress
// of the interface named iface, for the servers on ports. On error nothing
// stays attached and nothing is pinned that was not before.
func Attach(iface string, ports []uint16, opts ...Option) (*Guard, error) {
	cfg, err := newConfig(ports, opts)
	if err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("strayguard: interface %q: %w: %w", iface, err, ErrInvalidOption)
	}
	l2, err := linkHeaderLen(ifi.Name)
	if err != nil {
		return nil, err
	}
	spec, err := newSpec(cfg, l2)
	if err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()

	g := &Guard{ifindex: ifi.Index, iface: ifi.Name, ports: slices.Clone(ports), pinDir: cfg.pinDir}
	ok := false
	var before []string // what was pinned before this Attach, which a failure leaves
	defer func() {
		if !ok {
			g.release()
			if g.pinDir != "" {
				unpinNew(g.pinDir, before)
			}
		}
	}()
	if g.pinDir != "" {
		_, statErr := os.Stat(g.pinDir)
		if g.lock, err = lockPinDir(g.pinDir); err != nil {
			return nil, err
		}
		if statErr == nil {
			before, _ = filepath.Glob(filepath.Join(g.pinDir, "*"))
		}
		if g.adopted, err = adoptMaps(spec, g.pinDir); err != nil {
			return nil, err
		}
	}
	if err := load(spec, g.pinDir, ports, &g.objs); err != nil {
		return nil, err
	}
	if err := g.attach(); err != nil {
		return nil, err
	}
	ok = true
	return g, nil
}

// newSpec is the compiled programs set up for cfg on an interface whose
// link header is l2 bytes long.
func newSpec(cfg config, l2 int) (*ebpf.CollectionSpec, error) {
	spec, err := loadGuard()
	if err != nil {
		return nil, fmt.Errorf("strayguard: reading the compiled programs: %w", err)
	}
	spec.Maps["quiet"].MaxEntries = uint32(cfg.maxPeers)
	if err := spec.Variables["quiet_ns"].Set(uint64(cfg.quiet)); err != nil {
		return nil, fmt.Errorf("strayguard: setting the quiet period: %w", err)
	}
	if err := spec.Variables["l2_len"].Set(uint32(l2)); err != nil {
		return nil, fmt.Errorf("strayguard: setting the link header length: %w", err)
	}
	return spec, nil
}

// load loads spec into objs, with its maps pinned in pinDir (none if
// empty), and writes the ports the programs watch.
func load(spec *ebpf.CollectionSpec, pinDir string, ports []uint16, objs *guardObjects) error {
	var opts ebpf.CollectionOptions
	opts.Maps.PinPath = pinDir
	if pinDir == "" {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	if err := spec.LoadAndAssign(objs, &opts); err != nil {
		return loadError(err)
	}
	var bits [1024]uint64
	for _, p := range ports {
		bits[p/64] |= 1 << (p % 64)
	}
	for i, w := range bits {
		if w != 0 {
			if err := objs.Ports.Put(uint32(i), w); err != nil {
				return fmt.Errorf("strayguard: writing the port map: %w", err)
			}
		}
	}
	return nil
}

// Adopted reports whether Attach found a pinned quiet map and carried on
// with its quiet clients.
func (g *Guard) Adopted() bool { return g.adopted }

// Interface and Ports say what the Guard watches.
func (g *Guard) Interface() string { return g.iface }

// Ports returns the guarded server ports.
func (g *Guard) Ports() []uint16 { return slices.Clone(g.ports) }

// Stats reads the counters and counts the quiet map's entries.
func (g *Guard) Stats() (Stats, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var s Stats
	if g.closed {
		return s, net.ErrClosed
	}
	var sums [numCounters]uint64
	per := make([]uint64, ebpf.MustPossibleCPU())
	for i := range sums {
		if err := g.objs.Counters.Lookup(uint32(i), &per); err != nil {
			return s, fmt.Errorf("strayguard: reading counter %d: %w", i, err)
		}
		for _, v := range per {
			sums[i] += v
		}
	}
	s.fromCounters(&sums)
	n, err := countEntries(g.objs.Quiet)
	if err != nil {
		return s, fmt.Errorf("strayguard: counting quiet clients: %w", err)
	}
	s.QuietClients = n
	return s, nil
}

// countEntries counts the quiet map's entries, thousands to a system call
// (a batch lookup), where iterating takes one or two per entry.
func countEntries(m *ebpf.Map) (int, error) {
	const batch = 4096
	keys := make([]guardQuietKey, batch)
	vals := make([]guardQuietValue, batch)
	var cursor ebpf.MapBatchCursor
	n := 0
	for {
		c, err := m.BatchLookup(&cursor, keys, vals, nil)
		n += c
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return n, nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return countByIterating(m)
		case err != nil:
			return n, err
		}
	}
}

// countByIterating is countEntries for kernels without batch lookups.
func countByIterating(m *ebpf.Map) (int, error) {
	var (
		k guardQuietKey
		v guardQuietValue
	)
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	return n, it.Err()
}

// Quiet reports how much of its quiet period client has left with the
// server on serverPort, and whether it is quiet at all.
func (g *Guard) Quiet(client netip.AddrPort, serverPort uint16) (time.Duration, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, false, net.ErrClosed
	}
	var v guardQuietValue
	err := g.objs.Quiet.Lookup(quietKey(client, serverPort), &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("strayguard: looking up %v: %w", client, err)
	}
	left := time.Duration(int64(v.Deadline) - monotonicNow())
	return left, left > 0, nil
}

// ProgramStats reads the kernel's run statistics of the two programs,
// which it keeps only while sysctl kernel.bpf_stats_enabled is 1 (or a
// process holds ebpf.EnableStats).
func (g *Guard) ProgramStats() (ingress, egress ProgramStats, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ingress, egress, net.ErrClosed
	}
	for _, p := range []struct {
		prog *ebpf.Program
		out  *ProgramStats
	}{{g.objs.StrayIngress, &ingress}, {g.objs.StrayEgress, &egress}} {
		s, err := p.prog.Stats()
		if err != nil {
			return ingress, egress, fmt.Errorf("strayguard: program statistics: %w", err)
		}
		*p.out = ProgramStats{Runs: s.RunCount, RunTime: s.Runtime}
	}
	return ingress, egress, nil
}

// Close releases the Guard. Unpinned, its programs are detached; pinned
// (WithPinDir), they go on filtering with their state until the next Attach
// with the same pin directory adopts them, or Detach.
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return g.release()
}

// Detach removes the programs from the interface and, if pinned, their pins
// and state.
func (g *Guard) Detach() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return net.ErrClosed
	}
	g.closed = true
	var errs []error
	if g.pinDir != "" {
		for _, l := range g.links {
			if l != nil {
				errs = append(errs, l.Unpin())
			}
		}
		errs = append(errs, g.objs.Quiet.Unpin(), g.objs.Counters.Unpin())
	}
	errs = append(errs, g.release())
	if g.pinDir != "" {
		errs = append(errs, os.Remove(g.pinDir))
	}
	return errors.Join(errs...)
}

// release closes every descriptor the Guard holds.
func (g *Guard) release() error {
	var errs []error
	for i, l := range g.links {
		if l != nil {
			errs = append(errs, l.Close())
			g.links[i] = nil
		}
	}
	errs = append(errs, g.objs.Close())
	if g.lock != nil {
		errs = append(errs, g.lock.Close())
		g.lock = nil
	}
	return errors.Join(errs...)
}

// quietKey is the quiet map's key for client and the server's port.
func quietKey(client netip.AddrPort, serverPort uint16) guardQuietKey {
	return guardQuietKey{
		Addr:       client.Addr().As16(),
		ClientPort: networkOrder(client.Port()),
		ServerPort: networkOrder(serverPort),
	}
}

// networkOrder is p as the programs hold it: its big-endian bytes read in
// the host's order.
func networkOrder(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// monotonicNow is bpf_ktime_get_ns's clock.
func monotonicNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// linkHeaderLen is how many bytes precede the IP header in what tc sees on
// the interface. The link type comes from SIOCGIFHWADDR, which answers for
// the caller's network namespace (sysfs shows the one it was mounted in).
func linkHeaderLen(iface string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("strayguard: interface %q: reading its link type: %w", iface, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(iface)
	if err == nil {
		err = unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr)
	}
	if err != nil {
		return 0, fmt.Errorf("strayguard: interface %q: reading its link type: %w", iface, err)
	}
	switch typ := ifr.Uint16(); typ { // the hardware address's sa_family
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		return 14, nil
	case unix.ARPHRD_NONE: // tun, WireGuard: bare IP packets
		return 0, nil
	default:
		return 0, fmt.Errorf("strayguard: interface %q has link type %d; Ethernet, loopback and bare-IP (tun, WireGuard) interfaces are supported: %w", iface, typ, ErrNotSupported)
	}
}

func loadError(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("strayguard: loading the BPF programs needs root, or CAP_BPF and CAP_NET_ADMIN: %w: %w", err, ErrPermission)
	}
	return fmt.Errorf("strayguard: loading the BPF programs: %w", err)
}
