//go:build linux

package strayguard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// bpffs is where a bpf file system is mounted when none is: systemd mounts
// one there at boot, plain containers and minimal hosts do not.
const bpffs = "/sys/fs/bpf"

// lockPinDir makes dir (on a bpf file system, mounting one at /sys/fs/bpf
// if dir lies under it and none is there) and takes an exclusive lock on
// it, held until the returned file is closed: one Guard per pin directory.
func lockPinDir(dir string) (*os.File, error) {
	if err := ensureBPFFS(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("strayguard: pin directory %s: pinning needs root, or CAP_BPF and CAP_NET_ADMIN: %w: %w", dir, err, ErrPermission)
		}
		return nil, fmt.Errorf("strayguard: pin directory %s: %w", dir, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("strayguard: pin directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("strayguard: pin directory %s is held by another running strayguard: %w", dir, ErrGuarded)
		}
		return nil, fmt.Errorf("strayguard: locking pin directory %s: %w", dir, err)
	}
	return f, nil
}

// ensureBPFFS checks that dir's nearest existing ancestor is on a bpf file
// system, mounting one at /sys/fs/bpf when dir lies under it.
func ensureBPFFS(dir string) error {
	at := dir
	for {
		if _, err := os.Stat(at); err == nil {
			break
		}
		at = filepath.Dir(at)
	}
	if onBPFFS(at) {
		return nil
	}
	if at != bpffs && !strings.HasPrefix(dir, bpffs+"/") {
		return fmt.Errorf("strayguard: pin directory %s is not on a bpf file system: %w", dir, ErrInvalidOption)
	}
	if err := os.MkdirAll(bpffs, 0o700); err != nil {
		return fmt.Errorf("strayguard: %w", err)
	}
	if onBPFFS(bpffs) {
		return nil
	}
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("strayguard: mounting a bpf file system at %s needs root: %w: %w", bpffs, err, ErrPermission)
		}
		return fmt.Errorf("strayguard: mounting a bpf file system at %s: %w", bpffs, err)
	}
	return nil
}

func onBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// adoptMaps decides, for each pinned map the programs share, whether the
// new programs can use it: a map of another shape (a changed
// WithMaxQuietPeers, a version with other counters) is unpinned, and that
// state starts afresh. It reports whether the quiet map is adopted.
func adoptMaps(spec *ebpf.CollectionSpec, dir string) (adopted bool, err error) {
	for _, name := range []string{"quiet", "counters"} {
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("strayguard: reading pinned map %s: %w", path, err)
		}
		cerr := spec.Maps[name].Compatible(m)
		m.Close()
		if cerr != nil {
			if err := os.Remove(path); err != nil {
				return false, fmt.Errorf("strayguard: replacing pinned map %s (%v): %w", path, cerr, err)
			}
			continue
		}
		if name == "quiet" {
			adopted = true
		}
	}
	return adopted, nil
}

// Remove detaches the programs pinned in dir by a Guard whose process has
// ended, and removes their pins and state. A dir with nothing pinned is not
// an error.
func Remove(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	lock, err := lockPinDir(dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	var errs []error
	for _, d := range directions {
		path := filepath.Join(dir, d.name)
		l, err := link.LoadPinnedLink(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("strayguard: %s: %w", path, err))
			continue
		}
		errs = append(errs, l.Unpin(), l.Close())
	}
	for _, name := range []string{"quiet", "counters"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, os.Remove(dir))
	return errors.Join(errs...)
}

// unpinNew removes what a failed Attach pinned in dir, keeping the pins
// that were there before it (a running filter's), and dir itself if it was
// not there either.
func unpinNew(dir string, before []string) {
	now, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, p := range now {
		if !slices.Contains(before, p) {
			os.Remove(p)
		}
	}
	if len(before) == 0 {
		os.Remove(dir) // only if empty
	}
}
