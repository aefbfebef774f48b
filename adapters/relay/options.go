package relay

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/strayfilter"
)

// Defaults for a Relay built without options.
const (
	// DefaultIdleTimeout ends an association with no datagram in either
	// direction for this long. It is longer than common NAT UDP timeouts
	// (30–180 s), so a client that keeps its NAT binding alive keeps its
	// association too.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultHandshakeTimeout ends an association whose server never sent an
	// encrypted record (epoch ≥ 1): a handshake that did not finish, or a
	// spoofed ClientHello. It is pion's default handshake timeout.
	DefaultHandshakeTimeout = 30 * time.Second
	// DefaultMaxAssociations caps associations, and so upstream sockets and
	// goroutines. It stays well below the usual 1,024 soft descriptor limit
	// times the 4 Go raises it to at start.
	DefaultMaxAssociations = 4096
)

// Option configures a Relay.
type Option func(*config) error

type config struct {
	quiet            time.Duration
	maxQuiet         int
	table            *conntrack.Table
	idle             time.Duration
	handshakeTimeout time.Duration
	maxAssoc         int
	filter           bool
	logger           *slog.Logger
}

func defaultConfig() config {
	return config{
		quiet:            conntrack.DefaultQuietPeriod,
		maxQuiet:         conntrack.DefaultMaxEntries,
		idle:             DefaultIdleTimeout,
		handshakeTimeout: DefaultHandshakeTimeout,
		maxAssoc:         DefaultMaxAssociations,
		filter:           true,
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("relay: "+format+": %w", append(args, strayfilter.ErrInvalidOption)...)
}

// WithQuietPeriod sets how long a client stays quiet after the server
// closed its association (default 10 s, see package strayfilter).
func WithQuietPeriod(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("quiet period %v must be positive", d)
		}
		c.quiet = d
		return nil
	}
}

// WithMaxQuietClients caps how many clients can be quiet at once (default
// 65,536); at the cap the client closed longest ago stops being quiet early.
func WithMaxQuietClients(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max quiet clients %d must be at least 1", n)
		}
		c.maxQuiet = n
		return nil
	}
}

// WithTable shares a quiet-peer table, for example between relays on two
// address families. It replaces WithQuietPeriod and WithMaxQuietClients.
func WithTable(t *conntrack.Table) Option {
	return func(c *config) error {
		if t == nil {
			return invalid("nil table")
		}
		c.table = t
		return nil
	}
}

// WithIdleTimeout ends associations with no datagram in either direction
// for d (default 5 minutes). Set it above the application's keepalive
// interval: a client that speaks after its association ended must shake
// hands again, because its datagrams are dropped until it sends a
// ClientHello.
func WithIdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("idle timeout %v must be positive", d)
		}
		c.idle = d
		return nil
	}
}

// WithHandshakeTimeout ends associations whose server has not sent an
// encrypted record d after the first ClientHello (default 30 s). It bounds
// what a spoofed ClientHello costs: one association slot for d.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("handshake timeout %v must be positive", d)
		}
		c.handshakeTimeout = d
		return nil
	}
}

// WithMaxAssociations caps concurrent associations (default 4,096). At the
// cap a ClientHello that would open another is dropped, counted as refused
// and logged.
func WithMaxAssociations(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max associations %d must be at least 1", n)
		}
		c.maxAssoc = n
		return nil
	}
}

// WithFiltering(false) turns the relay into a plain per-client NAT: every
// datagram from a client without an association opens one, server alerts
// end nothing, and nothing is dropped. It exists to show, side by side,
// what the filtering prevents; do not run it in production.
func WithFiltering(on bool) Option {
	return func(c *config) error {
		c.filter = on
		return nil
	}
}

// WithLogger sets where the relay logs: associations opening and closing at
// debug level, refused ClientHellos and socket errors at warn (at most one
// line per second per kind). The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return invalid("nil logger")
		}
		c.logger = l
		return nil
	}
}
