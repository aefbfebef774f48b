package demux

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/straydtls/straydtls/strayfilter"
)

// Defaults for the listeners.
const (
	DefaultHandshakeTimeout     = 30 * time.Second // pion's default ConnectContextMaker
	DefaultMaxPendingHandshakes = 128
	DefaultBacklog              = 128 // pion's, and Linux's listen backlog
)

// Option configures a Listener or PacketListener.
type Option func(*config) error

type config struct {
	filterOpts       []strayfilter.Option
	handshakeTimeout time.Duration
	maxPending       int
	backlog          int
	rehandshake      bool
	logger           *slog.Logger
}

func defaultConfig() config {
	return config{
		handshakeTimeout: DefaultHandshakeTimeout,
		maxPending:       DefaultMaxPendingHandshakes,
		backlog:          DefaultBacklog,
		rehandshake:      true,
	}
}

func buildConfig(opts []Option) (config, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("demux: "+format+": %w", append(args, strayfilter.ErrInvalidOption)...)
}

// WithFilter passes options to the strayfilter.Conn under the listener
// (quiet period, table, logger, drop hook). Alert detection is always off
// under a listener: it learns closes from the stack closing connections.
func WithFilter(opts ...strayfilter.Option) Option {
	return func(c *config) error {
		c.filterOpts = append(c.filterOpts, opts...)
		return nil
	}
}

// WithHandshakeTimeout bounds each server handshake (default 30 s, pion's).
// A handshake that does not finish in time is abandoned and its peer
// quieted; it never holds up other clients, whose handshakes run
// concurrently.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("handshake timeout %v must be positive", d)
		}
		c.handshakeTimeout = d
		return nil
	}
}

// WithMaxPendingHandshakes caps handshakes under way at once (default 128).
// A ClientHello from a new peer beyond the cap is dropped and counted; the
// client retransmits it.
func WithMaxPendingHandshakes(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max pending handshakes %d must be at least 1", n)
		}
		c.maxPending = n
		return nil
	}
}

// WithBacklog caps connections that completed their handshake but were not
// yet accepted (default 128). Beyond it a connection is closed and counted.
func WithBacklog(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("backlog %d must be at least 1", n)
		}
		c.backlog = n
		return nil
	}
}

// WithRehandshake turns RFC 6347 §4.2.8 support on (the default) or off.
// When on, an epoch-0 ClientHello from a peer that has a live association
// starts a pending association beside it; the old one is retired only when
// the new handshake completes. See the package documentation.
func WithRehandshake(on bool) Option {
	return func(c *config) error {
		c.rehandshake = on
		return nil
	}
}

// WithLogger logs handshake failures and refusals at Debug level.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		c.logger = l
		return nil
	}
}
