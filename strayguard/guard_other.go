//go:build !linux

package strayguard

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"
)

// Guard is the pair of programs attached to one interface; only Linux has
// them.
type Guard struct{}

// Attach fails with ErrNotSupported: tcx and BPF are Linux's.
func Attach(iface string, ports []uint16, opts ...Option) (*Guard, error) {
	if _, err := newConfig(ports, opts); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("strayguard: %s has no BPF programs at tcx: %w", runtime.GOOS, ErrNotSupported)
}

// Remove fails with ErrNotSupported.
func Remove(dir string) error {
	return fmt.Errorf("strayguard: %s has no BPF programs at tcx: %w", runtime.GOOS, ErrNotSupported)
}

func (g *Guard) Adopted() bool         { return false }
func (g *Guard) Interface() string     { return "" }
func (g *Guard) Ports() []uint16       { return nil }
func (g *Guard) Close() error          { return nil }
func (g *Guard) Detach() error         { return nil }
func (g *Guard) Stats() (Stats, error) { return Stats{}, ErrNotSupported }
func (g *Guard) Quiet(netip.AddrPort, uint16) (time.Duration, bool, error) {
	return 0, false, ErrNotSupported
}

// ProgramStats fails with ErrNotSupported.
func (g *Guard) ProgramStats() (ingress, egress ProgramStats, err error) {
	return ingress, egress, ErrNotSupported
}
