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
	// DefaultMaxUnverified caps handshakes whose client has not yet proved
	// its address. At the cap the oldest is evicted, so a flood of forged
	// ClientHellos at rate r gives each about DefaultMaxUnverified/r
	// seconds: at 5,000 a second, 200 ms, a hundred loopback round trips.
	DefaultMaxUnverified = 1024
	// DefaultUnverifiedTimeout ends a handshake whose client has not proved
	// its address in time: long enough for a lost HelloVerifyRequest and
	// two retransmitted ClientHellos (1 s, then 2 s: RFC 6347 §4.2.4.1).
	DefaultUnverifiedTimeout = 5 * time.Second
)

// Option configures a Listener or PacketListener.
type Option func(*config) error

type config struct {
	filterOpts        []strayfilter.Option
	handshakeTimeout  time.Duration
	maxPending        int
	maxUnverified     int
	unverifiedTimeout time.Duration
	backlog           int
	rehandshake       bool
	closeEcho         bool
	cidLen            int // LearnLength: from the stack's first ServerHello
	dtls13            bool
	logger            *slog.Logger
}

func defaultConfig() config {
	return config{
		handshakeTimeout:  DefaultHandshakeTimeout,
		maxPending:        DefaultMaxPendingHandshakes,
		maxUnverified:     DefaultMaxUnverified,
		unverifiedTimeout: DefaultUnverifiedTimeout,
		backlog:           DefaultBacklog,
		rehandshake:       true,
		closeEcho:         true,
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

// WithHandshakeTimeout bounds each server handshake (default 30 s, pion's),
// counted from the first ClientHello. A handshake that does not finish in
// time is abandoned; it never holds up other clients, whose handshakes run
// concurrently, and it leaves nothing behind (no quiet period).
func WithHandshakeTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("handshake timeout %v must be positive", d)
		}
		c.handshakeTimeout = d
		return nil
	}
}

// WithMaxPendingHandshakes caps handshakes under way at once whose client
// proved its address by echoing the server's cookie (default 128). A
// cookie echo beyond the cap is dropped and counted as refused; the client
// retransmits it. Handshakes not yet proved have their own cap
// (WithMaxUnverified) and never take these slots.
func WithMaxPendingHandshakes(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max pending handshakes %d must be at least 1", n)
		}
		c.maxPending = n
		return nil
	}
}

// WithMaxUnverified caps handshakes whose client has not yet proved its
// address (default 1,024): a forged ClientHello costs one of these slots,
// for at most WithUnverifiedTimeout. At the cap the oldest is evicted to
// admit the next ClientHello, which is never refused (a SYN cache).
func WithMaxUnverified(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("max unverified handshakes %d must be at least 1", n)
		}
		c.maxUnverified = n
		return nil
	}
}

// WithUnverifiedTimeout ends a handshake whose client has not proved its
// address this long after its first ClientHello (default 5 s).
func WithUnverifiedTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("unverified timeout %v must be positive", d)
		}
		c.unverifiedTimeout = d
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
// When on, an epoch-0 ClientHello with a new client random from a peer
// that has an established association starts a handshake beside it; the
// old one is retired only when the new handshake completes. See the
// package documentation.
func WithRehandshake(on bool) Option {
	return func(c *config) error {
		c.rehandshake = on
		return nil
	}
}

// WithCloseEcho turns the close echo on (the default) or off: when the
// stack closed an association whose handshake completed, its closing alert
// is kept for the peer's quiet period and sent again on the peer's 1st,
// 2nd, 4th, 8th... stray (see strayfilter.WithCloseEcho), so a client that
// missed it learns at once that the association is over.
func WithCloseEcho(on bool) Option {
	return func(c *config) error {
		c.closeEcho = on
		return nil
	}
}

// LearnLength is the CID length to pass to WithConnectionIDs for a stack
// whose configuration does not say it (pion v4's options are opaque): the
// length of the first CID the stack names in a ServerHello, or issues
// (Conn.IssueCID).
const LearnLength = -1

// WithConnectionIDs routes records that carry a Connection ID (tls12_cid,
// RFC 9146; DTLS 1.3 unified headers with a CID, RFC 9147 §9) by their CID
// of n bytes, the length of the CIDs the stack generates (pion v3:
// len(Config.ConnectionIDGenerator()); LearnLength to learn it), instead
// of by address, so a client whose NAT rebinds its port keeps its
// association. A Conn then reports each datagram's source in ReadFrom,
// and when its stack, having authenticated a record from a new address,
// sends there, the peer moves (see package assoc, rule 9, and
// Conn.FollowStack). 0, the default, routes by address alone; the only
// choice for a stack that does not authenticate a record before it
// follows its source.
func WithConnectionIDs(n int) Option {
	return func(c *config) error {
		if n < LearnLength || n > 255 {
			return invalid("connection ID length %d must be 0 to 255, or LearnLength", n)
		}
		c.cidLen = n
		return nil
	}
}

// WithDTLS13 says the stack may speak DTLS 1.3 (pion v4): an ACK record in
// the clear (content type 26, epoch 0) is then one it may accept, and is
// no longer dropped as invalid (see package assoc, rule 5).
func WithDTLS13(on bool) Option {
	return func(c *config) error {
		c.dtls13 = on
		return nil
	}
}

// WithLogger logs handshake failures at Debug level. Without it nothing is
// logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return invalid("logger is nil (leave WithLogger out to log nothing)")
		}
		c.logger = l
		return nil
	}
}
