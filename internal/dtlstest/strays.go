package dtlstest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
	"github.com/straydtls/straydtls/udprelay"
)

// EpochOneHandshake returns the client's late-Finished stray recorded by
// r, failing t if there is none.
func EpochOneHandshake(t testing.TB, r *udprelay.Recorder, client netip.AddrPort) []byte {
	t.Helper()
	rec, ok := r.EpochOneHandshake(client)
	if !ok {
		t.Fatalf("client %v sent no epoch-1 handshake record", client)
	}
	return rec
}

// RequireOpenSSL skips the test when the openssl CLI is missing. CI
// installs it, so there the test always runs.
func RequireOpenSSL(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl CLI not installed (apt-get install -y openssl); .ci/run installs it")
	}
}

// OpenSSLClient runs `echo <input> | openssl s_client -dtls1_2 -connect addr`,
// the seed's client, and returns its combined output.
func OpenSSLClient(addr netip.AddrPort, input string, extra ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"s_client", "-dtls1_2", "-connect", addr.String()}, extra...)
	cmd := exec.CommandContext(ctx, "openssl", args...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// RunOpenSSLLateCloseNotify runs `echo hello N | openssl s_client -dtls1_2`
// against ln n times, sequentially, through a relay that holds each
// client's close_notify until the server has read, echoed and closed, then
// delivers it: the seed's late close_notify, made deterministic. Every
// iteration must succeed and every late close_notify must be dropped by the
// filter.
func RunOpenSSLLateCloseNotify(t *testing.T, ln interface {
	net.Listener
	Filter() *strayfilter.Conn
}, n int) {
	t.Helper()
	rec := udprelay.NewRecorder()
	rec.HoldAlerts(true)
	relay, err := udprelay.New(ln.Addr().(*net.UDPAddr).AddrPort(), rec.Hook)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	got := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 2048)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, err := c.Read(buf)
			if err == nil {
				c.Write(buf[:m])
			}
			c.Close()
			got <- string(buf[:m])
		}
	}()
	before := ln.Filter().Stats().Strays[record.ReasonAlert]
	held := 0
	for i := range n {
		want := fmt.Sprintf("hello %d\n", i)
		out, err := OpenSSLClient(relay.Addr(), want)
		if err != nil {
			t.Fatalf("iteration %d: openssl s_client: %v\n%s", i, err, out)
		}
		select {
		case msg := <-got:
			if msg != want {
				t.Fatalf("iteration %d: server read %q, want %q", i, msg, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("iteration %d: server never read the message\n%s", i, out)
		}
		// The server has closed. Everything s_client sent is now in the
		// relay; its held close_notify goes out late.
		if err := relay.Flush(); err != nil {
			t.Fatal(err)
		}
		held += relay.Release()
	}
	if held < n {
		t.Fatalf("only %d of %d clients sent a close_notify to delay", held, n)
	}
	WaitFor(t, "late close_notify dropped", func() bool {
		return ln.Filter().Stats().Strays[record.ReasonAlert]-before == uint64(held)
	})
	ln.Close()
	<-done
}

// WaitFor polls cond until it holds, failing t after 10 s. It is for state
// that settles asynchronously (a datagram crossing loopback, a goroutine
// ending), never a stand-in for ordering a test can establish directly.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
