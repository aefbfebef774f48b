//go:build !linux

package udpio

import (
	"errors"
	"syscall"
)

// ReusePort is implemented for Linux only.
func ReusePort(_, _ string, _ syscall.RawConn) error {
	return errors.New("SO_REUSEPORT is implemented for Linux only")
}
