package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/cmd/internal/daemon"
)

// storeInSystemd freezes r and puts its sockets and state into systemd's
// file descriptor store, for the relay systemd starts next (a restart)
// to carry on. It reports false, with r thawed, where there is no store
// (FDSTORE unset: FileDescriptorStoreMax= is 0) or it failed.
func storeInSystemd(log *slog.Logger, r *relay.Relay) bool {
	max, err := strconv.Atoi(os.Getenv("FDSTORE"))
	if err != nil || max <= 0 || os.Getenv("NOTIFY_SOCKET") == "" {
		return false
	}
	h, err := r.Freeze()
	if err != nil {
		log.Warn("no hand-over through systemd's store", "err", err)
		return false
	}
	defer h.Close()
	if n := len(h.Listeners) + len(h.Upstreams) + 1; n > max {
		log.Warn("systemd's file descriptor store is too small for the hand-over; the next start is cold",
			"descriptors", n, "FileDescriptorStoreMax", max)
		r.Thaw()
		return false
	}
	err = func() error {
		mfd, err := unix.MemfdCreate(fdState, unix.MFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("memfd_create: %w", err)
		}
		state := os.NewFile(uintptr(mfd), fdState)
		defer state.Close()
		if _, err := state.Write(h.State); err != nil {
			return err
		}
		push := func(name string, f *os.File) error {
			return daemon.NotifyWithFDs("FDSTORE=1\nFDNAME="+name, []int{int(f.Fd())})
		}
		for i, f := range h.Listeners {
			if err := push(fdListen+strconv.Itoa(i), f); err != nil {
				return err
			}
		}
		for i, f := range h.Upstreams {
			if err := push(fdUpstream+strconv.Itoa(i), f); err != nil {
				return err
			}
		}
		// The state last: a successor that finds it finds the rest.
		return push(fdState, state)
	}()
	if err != nil {
		log.Warn("storing the hand-over in systemd failed; the next start is cold", "err", err)
		r.Thaw()
		return false
	}
	log.Info("handed over to systemd's file descriptor store", "upstream_sockets", len(h.Upstreams))
	return true
}
