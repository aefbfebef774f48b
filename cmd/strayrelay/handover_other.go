//go:build !unix

package main

import (
	"errors"
	"io"
	"log/slog"
	"os"

	"github.com/straydtls/straydtls/adapters/relay"
)

var errNoHandover = errors.New("hand-over needs a unix system")

// handoverSignal: none here (no SIGUSR2).
var handoverSignal os.Signal

type inherited struct {
	h     *relay.Handover
	from  string
	ready *os.File
}

func inheritedHandover() (*inherited, error) { return nil, nil }
func (in *inherited) adopted(*slog.Logger)   {}

func handOver(*slog.Logger, *relay.Relay, string, []string, io.Writer) (int, error) {
	return 0, errNoHandover
}
