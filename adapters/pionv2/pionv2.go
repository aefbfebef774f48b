package pionv2

import (
	"context"
	"fmt"
	"net"

	"github.com/pion/dtls/v2"

	"github.com/straydtls/straydtls/adapters/demux"
)

// Listen is dtls.Listen with the stray filter under it: it opens a UDP
// socket on laddr and returns a listener whose Accept yields established
// *dtls.Conn values. Switching is a one-line change:
//
//	ln, err := dtls.Listen("udp", laddr, config)   // before
//	ln, err := pionv2.Listen("udp", laddr, config) // after
func Listen(network string, laddr *net.UDPAddr, config *dtls.Config, opts ...demux.Option) (*demux.Listener, error) {
	if config == nil {
		return nil, fmt.Errorf("pionv2: config is nil")
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

// NewListener serves DTLS on an existing packet conn, which it owns: a
// *net.UDPConn, a socket with options set, or a pion vnet conn.
func NewListener(pc net.PacketConn, config *dtls.Config, opts ...demux.Option) (*demux.Listener, error) {
	if config == nil {
		return nil, fmt.Errorf("pionv2: config is nil")
	}
	return demux.NewListener(pc, Handshake(config), opts...)
}

// Handshake runs pion/dtls v2's server handshake over a per-peer conn. The
// listener's handshake timeout bounds it; a ConnectContextMaker in config,
// if set, bounds it too, whichever ends first.
func Handshake(config *dtls.Config) demux.Handshake {
	return func(ctx context.Context, c *demux.Conn) (net.Conn, error) {
		if config.ConnectContextMaker != nil {
			cctx, cancelMaker := config.ConnectContextMaker()
			defer cancelMaker()
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(cctx, cancel)
			defer stop()
		}
		co := newCloseOrder(c)
		dc, err := dtls.ServerWithContext(ctx, co, config)
		if err != nil {
			return nil, err // not dc: a typed nil would look like a conn
		}
		co.established()
		return dc, nil
	}
}
