package relay

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/quietcfg"
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
	// DefaultMaxAssociations caps associations whose client proved its
	// address, and so their upstream sockets.
	DefaultMaxAssociations = 4096
	// DefaultMaxUnverified caps associations whose client has not proved
	// its address yet (what a forged ClientHello opens). At the cap the
	// oldest is evicted: a flood at rate r gives each about
	// DefaultMaxUnverified/r seconds to prove itself, 500 ms at 2,000 a
	// second.
	DefaultMaxUnverified = 1024
	// DefaultUnverifiedTimeout ends an association whose client has not
	// proved its address in time: a lost HelloVerifyRequest and two
	// retransmitted ClientHellos (1 s, then 2 s) fit.
	DefaultUnverifiedTimeout = 5 * time.Second
	// DefaultCloseLinger is how long an association lingers after the
	// client's closing alert when the server does not answer it (GnuTLS
	// does not); anything crossing meanwhile keeps it.
	DefaultCloseLinger = 5 * time.Second
)

// Option configures a Relay.
type Option func(*config) error

type config struct {
	table             quietcfg.Config
	idle              time.Duration
	handshakeTimeout  time.Duration
	maxAssoc          int
	maxUnverified     int
	unverifiedTimeout time.Duration
	linger            time.Duration
	closeEcho         bool
	rcvbuf, sndbuf    int
	readers           int
	filter            bool
	logger            *slog.Logger
}

func defaultConfig() config {
	return config{
		idle:              DefaultIdleTimeout,
		handshakeTimeout:  DefaultHandshakeTimeout,
		maxAssoc:          DefaultMaxAssociations,
		maxUnverified:     DefaultMaxUnverified,
		unverifiedTimeout: DefaultUnverifiedTimeout,
		linger:            DefaultCloseLinger,
		closeEcho:         true,
		rcvbuf:            DefaultSocketBuffer,
		sndbuf:            DefaultSocketBuffer,
		readers:           1,
		filter:            true,
	}
}

// ErrInvalidOption is wrapped by every error New and Listen return for a
// bad option or address. It is the same value as conntrack's and
// strayfilter's ErrInvalidOption.
var ErrInvalidOption = conntrack.ErrInvalidOption

func invalidErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("relay: %w: %w", err, ErrInvalidOption)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("relay: "+format+": %w", append(args, ErrInvalidOption)...)
}

// WithQuietPeriod sets how long a client stays quiet after the server
// closed its association (default 10 s): how long its strays are counted
// as such and earn it the server's closing alert again (WithCloseEcho).
func WithQuietPeriod(d time.Duration) Option {
	return func(c *config) error {
		return invalidErr(c.table.Set("WithQuietPeriod", conntrack.WithQuietPeriod(d)))
	}
}

// WithMaxQuietPeers caps how many clients can be quiet at once (default
// 65,536); at the cap the client closed longest ago stops being quiet early.
func WithMaxQuietPeers(n int) Option {
	return func(c *config) error {
		return invalidErr(c.table.Set("WithMaxQuietPeers", conntrack.WithMaxQuietPeers(n)))
	}
}

// WithTable shares a quiet-peer table, for example between relays on two
// address families or SO_REUSEPORT readers. The table carries its own
// quiet period and cap, so WithTable excludes WithQuietPeriod and
// WithMaxQuietPeers.
func WithTable(t *conntrack.Table) Option {
	return func(c *config) error {
		return invalidErr(c.table.Share(t))
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

// WithHandshakeTimeout ends associations whose handshake has not
// completed d after the first ClientHello (default 30 s): the server has
// not sent an encrypted record after the client proved its address.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("handshake timeout %v must be positive", d)
		}
		c.handshakeTimeout = d
		return nil
	}
}

// WithMaxAssociations caps associations whose client proved its address
// (default 4,096). At the cap, a closing association (the client sent its
// alert, the server has not answered) is reclaimed for a new one; if none
// is closing, the client's cookie echo is dropped and counted as refused,
// and it retransmits.
func WithMaxAssociations(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max associations %d must be at least 1", n)
		}
		c.maxAssoc = n
		return nil
	}
}

// WithMaxUnverified caps associations whose client has not yet proved its
// address (default 1,024): what a forged ClientHello can open. At the cap
// the oldest is evicted to admit the next ClientHello, which is never
// refused (a SYN cache).
func WithMaxUnverified(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max unverified associations %d must be at least 1", n)
		}
		c.maxUnverified = n
		return nil
	}
}

// DefaultSocketBuffer is the receive and send buffer the relay asks for on
// its listening socket: every client's datagrams queue there while the
// relay is busy, and the kernel's default (about 200 KiB) holds a burst of
// only some hundreds.
const DefaultSocketBuffer = 4 << 20

// WithSocketBuffers sets the receive and send buffer sizes, in bytes, asked
// for on the listening socket (default DefaultSocketBuffer each). The
// kernel caps them (Linux: net.core.rmem_max and wmem_max); the relay logs
// a warning when it does, and Relay.SocketBuffers says what was granted.
func WithSocketBuffers(rcv, snd int) Option {
	return func(c *config) error {
		if rcv < 1 || snd < 1 {
			return invalid("socket buffers %d and %d bytes: both must be positive", rcv, snd)
		}
		c.rcvbuf, c.sndbuf = rcv, snd
		return nil
	}
}

// WithReaders reads the listening address through n sockets bound to it
// with SO_REUSEPORT (Linux), each read by its own goroutine; they share
// one association machine and table. The kernel spreads clients over the
// sockets by address, so each client's datagrams stay in order. Only
// Listen can open them: New reads the one socket it is given. Default 1;
// see benchmarks/README.md for what more did on a 2-vCPU machine.
func WithReaders(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 64 {
			return invalid("readers %d: must be 1 to 64", n)
		}
		c.readers = n
		return nil
	}
}

// WithUnverifiedTimeout ends an association whose client has not proved
// its address this long after its first ClientHello (default 5 s).
func WithUnverifiedTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("unverified timeout %v must be positive", d)
		}
		c.unverifiedTimeout = d
		return nil
	}
}

// WithCloseLinger sets how long an association lingers after its client's
// closing alert (default 5 s) before it ends and frees its slot; a
// datagram crossing either way meanwhile keeps it, and a server's own
// closing alert ends it at once. 0 turns it off: a client's alert then
// changes nothing.
func WithCloseLinger(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalid("close linger %v must not be negative", d)
		}
		c.linger = d
		return nil
	}
}

// WithCloseEcho turns the close echo on (the default) or off: the server's
// closing alert that ended a completed association is kept for the
// client's quiet period and sent to the client again on its 1st, 2nd, 4th,
// 8th... stray (at most conntrack.MaxEchoes times, never more bytes than
// the client sent), so a client that missed it learns at once that the
// association is over. The quiet period (WithQuietPeriod) is how long
// that lasts: without the echo, the relay would drop the client's strays
// all the same, as it has no association for them.
func WithCloseEcho(on bool) Option {
	return func(c *config) error {
		c.closeEcho = on
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
// debug level, socket errors at warn (at most one line per second per
// kind). Without it nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return invalid("logger is nil (leave WithLogger out to log nothing)")
		}
		c.logger = l
		return nil
	}
}
