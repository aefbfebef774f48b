package pionv4

import (
	"context"
	"fmt"
	"net"

	"github.com/pion/dtls/v4"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/strayfilter"
)

// Listen is dtls.Listen with the stray filter and the association rules
// under it, over pc, which the listener owns. Accept returns *dtls.Conn
// values whose handshake has completed (pion's own listener returns them
// before the handshake, which then runs on first use, with no time limit).
// The listener is a *demux.Listener (Stats, Filter).
//
//	ln, err := dtls.Listen(pc, opts...)   // before
//	ln, err := pionv4.Listen(pc, opts...) // after
func Listen(pc net.PacketConn, opts ...dtls.ServerOption) (net.Listener, error) {
	return NewListener(pc, opts)
}

// ListenAddr is dtls.ListenAddr with the stray filter under it: it binds
// laddr and serves as Listen does.
func ListenAddr(network string, laddr *net.UDPAddr, opts ...dtls.ServerOption) (net.Listener, error) {
	pc, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	ln, err := NewListener(pc, opts)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return ln, nil
}

// NewListener is Listen with the listener's own options (handshake
// timeout, caps, quiet period: package demux) beside pion's.
func NewListener(pc net.PacketConn, server []dtls.ServerOption, opts ...demux.Option) (*demux.Listener, error) {
	if pc == nil {
		return nil, fmt.Errorf("pionv4: packet conn is nil: %w", strayfilter.ErrInvalidOption)
	}
	return demux.NewListener(pc, Handshake(server...), ListenerOptions(opts...)...)
}

// ListenerOptions returns opts after the ones every pion v4 listener
// needs: DTLS 1.3 (plaintext ACKs are records it accepts) and routing by
// CID, whose length pion v4's options do not show, so it is learned from
// the first ServerHello that names one (demux.LearnLength). Pass them to
// demux.NewPacketListener for pion's own dtls.NewListener.
func ListenerOptions(opts ...demux.Option) []demux.Option {
	return append([]demux.Option{demux.WithDTLS13(true), demux.WithConnectionIDs(demux.LearnLength)}, opts...)
}

// Handshake runs pion/dtls v4's server handshake over a per-peer conn,
// bounded by the listener's handshake timeout (pion v4 itself has none).
// The conn follows where pion sends, so a return routability check (RFC
// 9853) probing a client's new path moves nothing until pion takes it;
// with dtls.WithConnectionID among opts, every CID pion issues routes to
// the association (see peekConnectionID).
func Handshake(opts ...dtls.ServerOption) demux.Handshake {
	cid, hasCID := peekConnectionID(opts)
	return func(ctx context.Context, c *demux.Conn) (net.Conn, error) {
		server := opts
		if hasCID {
			// Last, so it is the generator pion calls: the same CIDs,
			// each reported to the listener.
			server = append(append(make([]dtls.ServerOption, 0, len(opts)+1), opts...), dtls.WithConnectionID(func() []byte {
				id := cid.generator()
				c.IssueCID(id)
				return id
			}, cid.policy))
		}
		dc, err := dtls.Server(c, c.RemoteAddr(), server...)
		if err != nil {
			return nil, err
		}
		c.FollowStack(dc.RemoteAddr)
		if err := dc.HandshakeContext(ctx); err != nil {
			dc.Close()
			return nil, err
		}
		return dc, nil
	}
}

// NewPacketListener returns the inner listener for pion's own
// dtls.NewListener: a per-peer conn only for an epoch-0 ClientHello, the
// filter under it. pion then runs handshakes lazily and unbounded, and a
// rebooted client is not served at once; prefer Listen.
//
//	inner, err := pionv4.NewPacketListener(pc)
//	ln, err := dtls.NewListener(inner, opts...)
func NewPacketListener(pc net.PacketConn, opts ...demux.Option) (*demux.PacketListener, error) {
	return demux.NewPacketListener(pc, ListenerOptions(opts...)...)
}
