package demux_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/strayfilter"
)

func passThrough(_ context.Context, c *demux.Conn) (net.Conn, error) { return c, nil }

func listenLoopback(t *testing.T) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		opt  demux.Option
		want string
	}{
		{demux.WithHandshakeTimeout(0), "handshake timeout 0s"},
		{demux.WithMaxPendingHandshakes(0), "max pending handshakes 0"},
		{demux.WithMaxUnverified(-1), "max unverified handshakes -1"},
		{demux.WithUnverifiedTimeout(-time.Second), "unverified timeout -1s"},
		{demux.WithBacklog(0), "backlog 0"},
		{demux.WithLogger(nil), "logger is nil"},
		{demux.WithFilter(strayfilter.WithQuietPeriod(0)), "quiet period 0s"},
	} {
		pc := listenLoopback(t)
		ln, err := demux.NewListener(pc, passThrough, tc.opt)
		if err == nil {
			ln.Close()
		}
		pc.Close()
		if !errors.Is(err, strayfilter.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want ErrInvalidOption naming %q", err, tc.want)
		}
	}
	if _, err := demux.NewListener(listenLoopback(t), nil); !errors.Is(err, strayfilter.ErrInvalidOption) {
		t.Errorf("nil handshake: err = %v", err)
	}
}

// AcceptWithContext returns when its context ends; after Close, Accept
// returns an error that both net and go-coap recognise as a closed
// listener.
func TestAcceptWithContext(t *testing.T) {
	ln, err := demux.NewListener(listenLoopback(t), passThrough)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if c, err := ln.AcceptWithContext(ctx); c != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AcceptWithContext = %v, %v; want the context's error", c, err)
	}
	ln.Close()
	_, err = ln.AcceptWithContext(context.Background())
	if !errors.Is(err, net.ErrClosed) || !errors.Is(err, io.EOF) || !errors.Is(err, demux.ErrListenerClosed) {
		t.Fatalf("after Close: %v; want net.ErrClosed and io.EOF", err)
	}

	pl, err := demux.NewPacketListener(listenLoopback(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, _, err := pl.AcceptWithContext(ctx2); !errors.Is(err, context.Canceled) {
		t.Fatalf("PacketListener.AcceptWithContext = %v; want context.Canceled", err)
	}
	pl.Close()
	if _, _, err := pl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("PacketListener after Close: %v", err)
	}
}
