package main

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/udprelay"
)

var psk = []byte("test key")

// device is a CoAP client on its own UDP socket, so it can come back on the
// same port after a reboot, as a device does.
type device struct {
	uc *net.UDPConn
	dc *piondtls.Conn
	cc *udpclient.Conn
}

// close ends the association the way a client that shuts down does: with a
// close_notify (go-coap's client over a dtls.Conn leaves the conn open).
func (d *device) close() {
	d.cc.Close()
	d.dc.Close()
	d.uc.Close()
}

func dial(t *testing.T, local, server netip.AddrPort) *device {
	t.Helper()
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
	if err != nil {
		t.Fatal(err)
	}
	dc, err := piondtls.Client(uc, net.UDPAddrFromAddrPort(server), &piondtls.Config{
		PSK:             func([]byte) ([]byte, error) { return psk, nil },
		PSKIdentityHint: []byte("device"),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		uc.Close()
		t.Fatalf("handshake from %v: %v", local, err)
	}
	return &device{uc: uc, dc: dc, cc: coapdtls.Client(dc)}
}

func (d *device) local() netip.AddrPort { return d.uc.LocalAddr().(*net.UDPAddr).AddrPort() }

// get requests /hello and returns the body.
func (d *device) get(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := d.cc.Get(ctx, "/hello")
	if err != nil {
		t.Fatalf("GET /hello from %v: %v", d.local(), err)
	}
	body, err := io.ReadAll(res.Body())
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestServesThroughStraysAndReboots: a go-coap client does a request; the
// server closes the association; the client's late records (its
// close_notify, a copy of its request) arrive after that; a second client
// is then served at once, and so is the first device when it reboots and
// comes back on the same port while the server still holds an
// association for it (RFC 6347 §4.2.8).
func TestServesThroughStraysAndReboots(t *testing.T) {
	var mu sync.Mutex
	var serverConns []*udpclient.Conn
	s, err := start(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, psk, func(cc *udpclient.Conn) {
		mu.Lock()
		serverConns = append(serverConns, cc)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.coap.Serve(s.ln) }()
	defer func() {
		s.coap.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	server := s.ln.Addr().(*net.UDPAddr).AddrPort()

	// The first device talks through a relay that holds back what it sends
	// late: its alerts, and (once asked) a copy of its next request.
	rec := udprelay.NewRecorder()
	rec.HoldAlerts(true)
	front, err := udprelay.New(server, rec.Hook)
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	a := dial(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0), front.Addr())
	if body := a.get(t); !strings.HasPrefix(body, "hello 1") {
		t.Fatalf("first response %q", body)
	}
	// The server closes the association (its application decided so).
	mu.Lock()
	closing := serverConns[0]
	mu.Unlock()
	closing.Close()
	waitFor(t, "the server's close", func() bool { return s.ln.Stats().Filter.QuietPeers == 1 })
	// The device's own close and a late copy of its request reach the
	// server only now.
	a.close()
	clients := rec.Clients()
	for _, d := range recordsOf(rec, clients[0]) {
		front.Inject(udprelay.ToServer, clients[0], d)
	}
	if err := front.Flush(); err != nil {
		t.Fatal(err)
	}
	front.Release()
	waitFor(t, "the late records dropped", func() bool { return s.ln.Stats().Filter.TotalStrays() >= 1 })

	// A second client is served at once.
	start := time.Now()
	b := dial(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0), server)
	if body := b.get(t); !strings.HasPrefix(body, "hello 2") {
		t.Fatalf("second client's response %q", body)
	}
	t.Logf("second client served in %v", time.Since(start))

	// The second client's device reboots: its socket goes away without a
	// word, and it comes back on the same port while the server still holds
	// its association.
	local := b.local()
	b.uc.Close()
	start = time.Now()
	b2 := dial(t, local, server)
	defer b2.close()
	if body := b2.get(t); !strings.HasPrefix(body, "hello 3") {
		t.Fatalf("rebooted client's response %q", body)
	}
	t.Logf("rebooted client served in %v", time.Since(start))
	st := s.ln.Stats()
	if st.RehandshakeCompleted != 1 || st.Accepted != 3 {
		t.Fatalf("stats %+v: want three associations accepted, one a re-handshake", st)
	}
}

// recordsOf returns the application-data datagrams client sent: its
// requests, which the test replays late.
func recordsOf(rec *udprelay.Recorder, client netip.AddrPort) [][]byte {
	var out [][]byte
	for _, d := range rec.Sent(client) {
		if record.Inspect(d).Class == record.ClassApplicationData {
			out = append(out, d)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
