// Package dtlstest holds what the project's tests share to run real pion
// peers: one self-signed certificate, matching client and server configs
// for pion/dtls v2 and v3, and a goroutine-leak check.
package dtlstest

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	dtlsv2 "github.com/pion/dtls/v2"
	dtlsv3 "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/straydtls/straydtls/internal/fixture"
)

// Handshaker is a pion v3 or v4 conn: its handshake runs on HandshakeContext.
type Handshaker interface {
	HandshakeContext(ctx context.Context) error
	Close() error
}

// Handshake runs c's handshake, giving up after d, and closes c if it
// fails.
func Handshake(c Handshaker, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return err
	}
	return nil
}

// Timeout is a pion ConnectContextMaker that gives up after d.
func Timeout(d time.Duration) func() (context.Context, func()) {
	return func() (context.Context, func()) { return context.WithTimeout(context.Background(), d) }
}

// CheckGoroutines returns a function that fails t if goroutines started
// after this call are still running when it is called. It waits up to 5 s
// for them to end, because closing a DTLS conn finishes asynchronously.
func CheckGoroutines(t testing.TB) func() {
	before := countGoroutines()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := countGoroutines()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d running, %d before (pion's per-read context watchers not counted)\n%s",
					n, before, trimStacks(string(buf)))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// countGoroutines counts goroutines, leaving out the one pion/transport
// starts for every blocked ReadContext/ReadFromContext to watch its
// context: it comes and goes with each read of a live connection, so
// counting it made the baseline depend on timing. The read it watches is
// counted, so a leaked connection still shows.
func countGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "/connctx.(*connCtx).ReadContext.func") || strings.Contains(g, "/netctx.(*packetConn).ReadFromContext.func") ||
			strings.Contains(g, "/netctx.(*conn).ReadContext.func") {
			continue
		}
		count++
	}
	return count
}

func trimStacks(s string) string {
	var keep []string
	for _, g := range strings.Split(s, "\n\n") {
		if strings.Contains(g, "testing.tRunner") || strings.Contains(g, "testing.(*T).Run") ||
			strings.Contains(g, "runtime.goexit") && strings.Contains(g, "testing.runTests") {
			continue
		}
		keep = append(keep, g)
	}
	return strings.Join(keep, "\n\n")
}

// DialV2 runs a pion/dtls v2 client handshake over uc, a socket connected
// to the server, giving up after timeout.
func DialV2(t testing.TB, timeout time.Duration) func(uc *net.UDPConn) (net.Conn, error) {
	return func(uc *net.UDPConn) (net.Conn, error) {
		cfg := fixture.ClientV2(t)
		cfg.ConnectContextMaker = Timeout(timeout)
		return dtlsv2.Client(uc, cfg)
	}
}

// DialV3 runs a pion/dtls v3 client handshake over uc, a socket connected
// to the server, giving up after timeout.
func DialV3(t testing.TB, timeout time.Duration) func(uc *net.UDPConn) (net.Conn, error) {
	return DialV3With(fixture.ClientV3(t), timeout)
}

// DialV3With is DialV3 with a client config of the caller's.
func DialV3With(cfg *dtlsv3.Config, timeout time.Duration) func(uc *net.UDPConn) (net.Conn, error) {
	return func(uc *net.UDPConn) (net.Conn, error) {
		c, err := dtlsv3.Client(dtlsnet.PacketConnFromConn(uc), uc.RemoteAddr(), cfg)
		if err != nil {
			return nil, err
		}
		return c, Handshake(c, timeout)
	}
}
