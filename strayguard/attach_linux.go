//go:build linux

package strayguard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// attach attaches both programs, or adopts the pinned links and swaps their
// programs for ours, after checking that no other Guard watches our ports.
func (g *Guard) attach() error {
	var pinned [2]link.Link
	defer func() {
		for _, l := range pinned {
			if l != nil {
				l.Close()
			}
		}
	}()
	ours := map[ebpf.ProgramID]bool{}
	for i, d := range directions {
		if g.pinDir == "" {
			continue
		}
		l, err := link.LoadPinnedLink(filepath.Join(g.pinDir, d.name), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("strayguard: adopting the %s link pinned in %s: %w", d.name, g.pinDir, err)
		}
		pinned[i] = l
		info, err := l.Info()
		if err != nil {
			return fmt.Errorf("strayguard: reading the %s link pinned in %s: %w", d.name, g.pinDir, err)
		}
		if tcx := info.TCX(); tcx == nil || int(tcx.Ifindex) != g.ifindex {
			return fmt.Errorf("strayguard: the %s link pinned in %s is not at tcx %s of %s: %w", d.name, g.pinDir, d.name, g.iface, ErrGuarded)
		}
		ours[info.Program] = true
	}
	if err := g.checkOthers(ours); err != nil {
		return err
	}
	var fresh [2]bool
	undo := func() {
		for i, l := range g.links {
			if l != nil && fresh[i] {
				if g.pinDir != "" {
					l.Unpin()
				}
				l.Close()
				g.links[i] = nil
			}
		}
	}
	for i, d := range directions {
		prog := d.prog(&g.objs)
		if l := pinned[i]; l != nil {
			// The new programs take over the pinned links in place: no
			// datagram passes unfiltered in between.
			if err := l.Update(prog); err != nil {
				undo()
				return fmt.Errorf("strayguard: replacing the %s program: %w", d.name, err)
			}
			g.links[i], pinned[i] = l, nil
			continue
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: g.ifindex, Program: prog, Attach: d.attach})
		if err != nil {
			undo()
			return attachError(g.iface, d.name, err)
		}
		g.links[i], fresh[i] = l, true
		if g.pinDir != "" {
			if err := l.Pin(filepath.Join(g.pinDir, d.name)); err != nil {
				undo()
				return fmt.Errorf("strayguard: pinning the %s link in %s: %w", d.name, g.pinDir, err)
			}
		}
	}
	return nil
}

// checkOthers fails if a strayguard program other than ours (the pinned
// links' programs, which we replace) watches one of our ports on the
// interface: two of them would keep two quiet maps for one server.
func (g *Guard) checkOthers(ours map[ebpf.ProgramID]bool) error {
	for _, d := range directions {
		res, err := link.QueryPrograms(link.QueryOptions{Target: g.ifindex, Attach: d.attach})
		if err != nil {
			return attachError(g.iface, d.name, err)
		}
		for _, ap := range res.Programs {
			if ours[ap.ID] {
				continue
			}
			if port, ok := guardedBy(ap.ID, g.ports); ok {
				return fmt.Errorf("strayguard: port %d on %s is already guarded by BPF program %d (another strayguard): %w", port, g.iface, ap.ID, ErrGuarded)
			}
		}
	}
	return nil
}

// guardedBy reports the first of ports that program id, if it is one of
// strayguard's, watches.
func guardedBy(id ebpf.ProgramID, ports []uint16) (uint16, bool) {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return 0, false // gone since the query
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil || info.Name != ingressName && info.Name != egressName {
		return 0, false
	}
	ids, _ := info.MapIDs()
	for _, mid := range ids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			continue
		}
		mi, err := m.Info()
		if err == nil && mi.Name == "ports" {
			for _, p := range ports {
				var w uint64
				if m.Lookup(uint32(p/64), &w) == nil && w&(1<<(p%64)) != 0 {
					m.Close()
					return p, true
				}
			}
		}
		m.Close()
	}
	return 0, false
}

func attachError(iface, dir string, err error) error {
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		var u unix.Utsname
		_ = unix.Uname(&u)
		return fmt.Errorf("strayguard: kernel %s cannot attach at tcx (Linux 6.6 or later is needed): %w", unix.ByteSliceToString(u.Release[:]), ErrNotSupported)
	case errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission):
		return fmt.Errorf("strayguard: attaching at tcx %s of %s needs root, or CAP_NET_ADMIN: %w: %w", dir, iface, err, ErrPermission)
	}
	return fmt.Errorf("strayguard: attaching at tcx %s of %s: %w", dir, iface, err)
}
