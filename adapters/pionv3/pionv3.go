package pionv3

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/strayfilter"
)

// ErrConnectionIDUnsupported is returned for a config with a
// ConnectionIDGenerator: the adapter routes datagrams by address, so it
// could not follow a client whose Connection ID outlives its address.
var ErrConnectionIDUnsupported = errors.New("pionv3: Config.ConnectionIDGenerator is set, but the adapter routes by address and does not support Connection IDs (RFC 9146); use pion's own dtls.Listen for CID migration")

func check(config *dtls.Config) error {
	if config == nil {
		return fmt.Errorf("pionv3: config is nil: %w", strayfilter.ErrInvalidOption)
	}
	if config.ConnectionIDGenerator != nil {
		return fmt.Errorf("%w: %w", ErrConnectionIDUnsupported, strayfilter.ErrInvalidOption)
	}
	return nil
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
// handshakes lazily and unbounded; prefer NewListener.
//
//	inner, err := pionv3.NewPacketListener(pc)
//	ln, err := dtls.NewListener(inner, config)
func NewPacketListener(pc net.PacketConn, opts ...demux.Option) (*demux.PacketListener, error) {
	return demux.NewPacketListener(pc, opts...)
}
