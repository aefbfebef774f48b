package main

import (
	"io"
	"testing"

	"github.com/straydtls/straydtls/cmd/internal/daemon/daemontest"
)

// TestSystemdUnit: the shipped unit starts strayrelay with flags it accepts,
// and systemd-analyze verify finds nothing wrong with it.
func TestSystemdUnit(t *testing.T) {
	daemontest.VerifyUnit(t, "strayrelay.service", func(args []string) error {
		_, err := parse(args, io.Discard)
		return err
	})
}
