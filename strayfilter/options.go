package strayfilter

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/quietcfg"
	"github.com/straydtls/straydtls/record"
)

// ErrInvalidOption is wrapped by every error New returns for a bad option. It
// is the same value as conntrack.ErrInvalidOption.
var ErrInvalidOption = conntrack.ErrInvalidOption

// DefaultQuietPeriod is how long a closed peer stays quiet unless an option
// says otherwise. See the package documentation for why.
const DefaultQuietPeriod = conntrack.DefaultQuietPeriod

// DefaultMaxQuietPeers is the default cap on quiet peers.
const DefaultMaxQuietPeers = conntrack.DefaultMaxQuietPeers

// Option configures a Conn.
type Option func(*config) error

type config struct {
	table       quietcfg.Config
	noAlerts    bool
	dropNonDTLS bool
	echo        bool
	logger      *slog.Logger
	onDrop      func(netip.AddrPort, record.Reason)
	exempt      func(netip.AddrPort, []byte) bool
}

// invalid names the package and ErrInvalidOption in what a check of an
// option (internal/quietcfg, conntrack's options) found wrong; nil stays nil.
func invalidErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("strayfilter: %w: %w", err, ErrInvalidOption)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("strayfilter: "+format+": %w", append(args, ErrInvalidOption)...)
}

// WithQuietPeriod sets how long a peer stays quiet after its association was
// closed locally (default 10 s): how long every datagram from it but an
// epoch-0 ClientHello is dropped, and, with WithCloseEcho, how long those
// strays earn it the closing alert again. It must be positive.
func WithQuietPeriod(d time.Duration) Option {
	return func(c *config) error {
		return invalidErr(c.table.Set("WithQuietPeriod", conntrack.WithQuietPeriod(d)))
	}
}

// WithMaxQuietPeers caps how many peers can be quiet at once (default 65,536). At
// the cap the peer closed longest ago stops being filtered early.
func WithMaxQuietPeers(n int) Option {
	return func(c *config) error {
		return invalidErr(c.table.Set("WithMaxQuietPeers", conntrack.WithMaxQuietPeers(n)))
	}
}

// WithClock replaces time.Now for the quiet periods, for tests.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		return invalidErr(c.table.Set("WithClock", conntrack.WithClock(now)))
	}
}

// WithTable makes the Conn use a table shared with other Conns, for example
// the IPv4 and IPv6 sockets of a dual-stack server or an SO_REUSEPORT group,
// so that a peer closed on one is quiet on all. The table carries its own
// quiet period, cap and clock, so WithTable excludes those options.
func WithTable(t *conntrack.Table) Option {
	return func(c *config) error {
		return invalidErr(c.table.Share(t))
	}
}

// WithAlertDetection turns learning closes from outgoing alerts on (the
// default) or off. When on, a datagram written through the Conn that carries
// an alert at epoch ≥ 1, or a plaintext fatal alert or close_notify at epoch
// 0, puts its destination into the quiet period. Turn it off when the stack
// sends alerts it does not mean as closing, and call MarkClosed instead.
func WithAlertDetection(on bool) Option {
	return func(c *config) error {
		c.noAlerts = !on
		return nil
	}
}

// WithCloseEcho makes the Conn send a quiet peer the closing alert our
// side sent it (learnt from the alert written through the Conn, or given
// to MarkClosedWithAlert) again on the 1st, 2nd, 4th, 8th... datagram it
// drops from that peer, at most conntrack.MaxEchoes times and never more
// bytes than the peer sent. A client that missed the server's close_notify
// then learns at once that the association is over, instead of
// retransmitting until its own timeout (about 93 s for a confirmable CoAP
// request). Off by default: a wrapper under someone else's stack writes on
// its own only when asked. A forged source gets at most the old alert,
// which authenticates nothing new.
func WithCloseEcho(on bool) Option {
	return func(c *config) error {
		c.echo = on
		return nil
	}
}

// WithDropNonDTLS makes a quiet peer's non-DTLS datagrams (first byte outside
// 20..63: STUN, RTP, ...) dropped too. By default they pass, because
// protocols multiplexed on a DTLS port outlive the DTLS association.
func WithDropNonDTLS(on bool) Option {
	return func(c *config) error {
		c.dropNonDTLS = on
		return nil
	}
}

// WithExempt lets a datagram from a quiet peer pass when f says it belongs
// to a live association all the same. It is for a shell that routes some
// records by something other than their source address: a tls12_cid
// record whose Connection ID (RFC 9146) a live association has belongs to
// that association, even from an address a closed one left quiet, as when
// a NAT hands a live client a port a closed one used. f is asked only about
// a quiet peer's datagrams that are not ClientHellos, in the reading
// goroutine; it must not keep p. It must never say yes on the strength of
// the datagram alone: that would let anyone through.
func WithExempt(f func(peer netip.AddrPort, p []byte) bool) Option {
	return func(c *config) error {
		if f == nil {
			return invalid("exempt function is nil (leave WithExempt out to exempt nothing)")
		}
		c.exempt = f
		return nil
	}
}

// WithLogger logs every dropped datagram at Debug level. Nothing is
// formatted unless Debug is enabled. Without it nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return invalid("logger is nil (leave WithLogger out to log nothing)")
		}
		c.logger = l
		return nil
	}
}

// WithDropHook calls f for every dropped datagram, on the reading goroutine.
// f must be fast and must not call back into the Conn's read methods.
func WithDropHook(f func(peer netip.AddrPort, reason record.Reason)) Option {
	return func(c *config) error {
		c.onDrop = f
		return nil
	}
}

func (c *config) buildTable() (*conntrack.Table, error) {
	t, err := c.table.Table()
	return t, invalidErr(err)
}
