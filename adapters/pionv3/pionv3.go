package pionv3

import (
	"context"
	"fmt"
	"net"

	"github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/strayfilter"
)

func check(config *dtls.Config) error {
	if config == nil {
		return fmt.Errorf("pionv3: config is nil: %w", strayfilter.ErrInvalidOption)
	}
	return nil
}

// ConnectionIDs is the listener option that routes records by the
// Connection IDs config's ConnectionIDGenerator makes (RFC 9146): its
// length, which pion keeps fixed, as pion's own listener reads it. Without
// a generator, or with one that makes empty CIDs (the server receives
// none), it changes nothing. Listen and NewListener apply it themselves;
// pass it to NewPacketListener when pion's dtls.NewListener will run with
// config.
func ConnectionIDs(config *dtls.Config) demux.Option {
	n := 0
	if config != nil && config.ConnectionIDGenerator != nil {
		n = len(config.ConnectionIDGenerator())
	}
	return demux.WithConnectionIDs(n)
}

// Listen is dtls.Listen with the stray filter under it. Accept returns
// *dtls.Conn values whose handshake has completed (pion's own listener
// returns them before the handshake, which then runs on first use).
//
//	ln, err := dtls.Listen("udp", laddr, config)   // before
//	ln, err := pionv3.Listen("udp", laddr, config) // after
func Listen(network string, laddr *net.UDPAddr, config *dtls.Config, opts ...demux.Option) (*demux.Listener, error) {
	if err := check(config); err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	ln, err := NewListener(pc, config, opts...)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return ln, nil
}

// NewListener serves DTLS on an existing packet conn, which it owns.
func NewListener(pc net.PacketConn, config *dtls.Config, opts ...demux.Option) (*demux.Listener, error) {
	if err := check(config); err != nil {
		return nil, err
	}
	// Last, so the length is config's whatever opts say.
	opts = append(append([]demux.Option(nil), opts...), ConnectionIDs(config))
	return demux.NewListener(pc, Handshake(config), opts...)
}

// Handshake runs pion/dtls v3's server handshake over a per-peer conn,
// bounded by the listener's handshake timeout (pion v3 itself has none).
func Handshake(config *dtls.Config) demux.Handshake {
	return func(ctx context.Context, c *demux.Conn) (net.Conn, error) {
		dc, err := dtls.Server(c, c.RemoteAddr(), config)
		if err != nil {
			return nil, err
		}
		if err := dc.HandshakeContext(ctx); err != nil {
			dc.Close()
			return nil, err
		}
		return dc, nil
	}
}

// NewPacketListener returns the inner listener for pion's own
// dtls.NewListener: a dtlsnet.PacketListener over the filtered socket that
// creates a per-peer conn only for an epoch-0 ClientHello. pion then runs
// handshakes lazily and unbounded; prefer NewListener. With Connection IDs,
// pass ConnectionIDs(config): the inner listener does not see config.
//
//	inner, err := pionv3.NewPacketListener(pc, pionv3.ConnectionIDs(config))
//	ln, err := dtls.NewListener(inner, config)
func NewPacketListener(pc net.PacketConn, opts ...demux.Option) (*demux.PacketListener, error) {
	return demux.NewPacketListener(pc, opts...)
}
