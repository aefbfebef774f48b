//go:build !linux

package relay

import (
	"errors"
	"syscall"
)

// reusePort: WithReaders is implemented for Linux only.
func reusePort(_, _ string, _ syscall.RawConn) error {
	return errors.New("WithReaders > 1 needs SO_REUSEPORT, implemented for Linux only")
}
