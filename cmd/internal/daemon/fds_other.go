//go:build !unix

package daemon

import (
	"errors"
	"os"
)

// NotifyWithFDs: descriptors cross only unix sockets.
func NotifyWithFDs(string, []int) error { return errors.ErrUnsupported }

// ListenFDs: systemd passes descriptors only on Linux.
func ListenFDs() ([]*os.File, []string) { return nil, nil }
