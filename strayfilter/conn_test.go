package strayfilter_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
)

// recordingConn keeps a copy of every datagram a client sends. Once held,
// it records without sending, so the test decides which leftovers reach
// the server and when.
type recordingConn struct {
	net.PacketConn
	mu      sync.Mutex
	sent    [][]byte
	hold    bool
	alerted chan struct{} // closed at the first alert written while held
}

func (r *recordingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	r.mu.Lock()
	r.sent = append(r.sent, bytes.Clone(b))
	hold := r.hold
	if hold && record.Inspect(b).Class == record.ClassAlert && r.alerted != nil {
		close(r.alerted)
		r.alerted = nil
	}
	r.mu.Unlock()
	if hold {
		return len(b), nil
	}
	return r.PacketConn.WriteTo(b, addr)
}

func (r *recordingConn) holdWrites() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hold = true
	r.alerted = make(chan struct{})
	return r.alerted
}

func (r *recordingConn) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hold = false
}

func (r *recordingConn) Close() error { return nil } // the test closes the socket itself

func (r *recordingConn) find(t *testing.T, pred func(record.Record) bool) []byte {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.sent {
		if pred(record.Inspect(d)) {
			return d
		}
	}
	t.Fatal("the client sent no such datagram")
	return nil
}

func listenLoopback(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveOne runs a pion v3 server for one association on the shared socket:
// handshake, echo one message, close (which sends close_notify through the
// filter).
// serveOne serves one association on sc: handshake, one echo, and a close
// once echoed is closed (at once if it is nil). Waiting for the client to
// have read the echo keeps the test deterministic: a pion v3 client that
// has the echo and the close_notify both queued when it reads picks one at
// random (its Read selects on both), and read EOF about 5 times in 1,000.
//
// The filtered socket is lent to pion (fixture.Shared): pion closes the
// conn it was given when its association ends, and the test wants the
// socket to outlive the association, as a server's does.
func serveOne(t *testing.T, sc *fixture.Shared, peer net.Addr, echoed <-chan struct{}) <-chan error {
	done := make(chan error, 1)
	lent := sc.Lend()
	go func() {
		srv, err := dtlsv3.Server(lent, peer, fixture.ServerV3(t))
		if err != nil {
			done <- err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), fixture.HandshakeTimeout)
		defer cancel()
		if err := srv.HandshakeContext(ctx); err != nil {
			done <- err
			return
		}
		buf := make([]byte, 1500)
		n, err := srv.Read(buf)
		if err == nil {
			_, err = srv.Write(buf[:n])
		}
		if echoed != nil && err == nil {
			select {
			case <-echoed:
			case <-time.After(fixture.HandshakeTimeout):
				err = errors.New("the client never read the echo")
			}
		}
		if cerr := srv.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return done
}

// clientEcho runs a pion v3 client: handshake and one echo. afterWrite, if
// set, runs between sending the message and reading the echo; echoed, if
// set, is closed once the echo was read.
func clientEcho(t *testing.T, pc net.PacketConn, server net.Addr, afterWrite func(), echoed chan<- struct{}) *dtlsv3.Conn {
	t.Helper()
	cli, err := dtlsv3.Client(pc, server, fixture.ClientV3(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fixture.HandshakeTimeout)
	defer cancel()
	if err := cli.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if afterWrite != nil {
		afterWrite()
	}
	buf := make([]byte, 100)
	n, err := cli.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("echo: %q, %v", buf[:n], err)
	}
	if echoed != nil {
		close(echoed)
	}
	return cli
}

// TestConnDropsLeftoversOfClosedAssociation is the filter's core promise,
// against real pion peers on loopback.
func TestConnDropsLeftoversOfClosedAssociation(t *testing.T) {
	raw := listenLoopback(t)
	sc, err := strayfilter.New(raw, strayfilter.WithQuietPeriod(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	server := fixture.NewShared(sc)
	clientSock := listenLoopback(t)
	clientShared := fixture.NewShared(clientSock)
	client := &recordingConn{PacketConn: clientShared.Lend()}
	clientAddr := clientSock.LocalAddr()

	// 1. A real association: handshake, echo, the server closes.
	echoed := make(chan struct{})
	done := serveOne(t, server, clientAddr, echoed)
	var alerted <-chan struct{}
	cli := clientEcho(t, client, raw.LocalAddr(), func() { alerted = client.holdWrites() }, echoed)
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
	if !sc.Table().Quiet(clientSock.LocalAddr().(*net.UDPAddr).AddrPort()) {
		t.Fatal("the server's close_notify did not put the client into its quiet period")
	}
	if s := sc.Stats(); s.AlertCloses != 1 {
		t.Fatalf("AlertCloses = %d, want 1", s.AlertCloses)
	}
	// pion answers the server's close_notify with its own, encrypted, at
	// epoch 1: the seed's late close_notify. It is held back, to be sent late.
	cli.Close()
	select {
	case <-alerted:
	case <-time.After(5 * time.Second):
		t.Fatal("the client never sent its close_notify")
	}

	// 2. More leftovers of the old association, re-sent from its address.
	flight5 := client.find(t, func(r record.Record) bool {
		return r.Class == record.ClassHandshake && r.Epoch == 0 && r.MsgType == 16
	})
	appData := client.find(t, func(r record.Record) bool { return r.Class == record.ClassApplicationData })
	closeNotify := client.find(t, func(r record.Record) bool { return r.Class == record.ClassAlert && r.Epoch == 1 })
	finished := loadRecord(t, "pion-v2-mtu60-11-client-handshake-epoch1.hex")
	strays := [][]byte{flight5, appData, closeNotify, finished}
	for _, s := range strays {
		if _, err := clientSock.WriteTo(s, raw.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}

	// 3. Another peer's traffic, sent after the strays, comes back byte for
	// byte: loopback keeps one socket's queue in order, so reading it also
	// proves every stray before it was seen and dropped. The server's
	// reads end first: one still under way would take the first of them.
	server.Reclaim()
	other := listenLoopback(t)
	otherTraffic := [][]byte{
		appData,     // DTLS-looking bytes from a live peer
		closeNotify, // a spoofed alert from a live peer's address
		loadRecord(t, "synthetic-stun-binding-request.hex"),
		{0x80, 0x60, 1, 2, 3},
		loadRecord(t, "synthetic-clienthello-truncated-header.hex"),
	}
	for _, d := range otherTraffic {
		if _, err := other.WriteTo(d, raw.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, want := range otherTraffic {
		n, from, err := sc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if from.String() != other.LocalAddr().String() {
			t.Fatalf("read %d: got a datagram from %v (% x), want only the other peer's", i, from, buf[:n])
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("read %d: other peer's datagram changed: % x, want % x", i, buf[:n], want)
		}
	}
	s := sc.Stats()
	wantDrops := map[record.Reason]uint64{
		record.ReasonAlert:           1,
		record.ReasonNotClientHello:  1,
		record.ReasonApplicationData: 1,
		record.ReasonHandshakeEpoch:  1,
	}
	for reason, want := range wantDrops {
		if got := s.Strays[reason]; got != want {
			t.Errorf("dropped[%v] = %d, want %d (stats %+v)", reason, got, want, s)
		}
	}
	if s.TotalStrays() != uint64(len(strays)) {
		t.Errorf("dropped %d datagrams, want %d", s.TotalStrays(), len(strays))
	}
	// The spoofed alert from the live peer changed nothing.
	if sc.Table().Quiet(other.LocalAddr().(*net.UDPAddr).AddrPort()) || s.QuietPeers != 1 {
		t.Fatalf("incoming alert created state: peers = %d", s.QuietPeers)
	}

	// 4. The same addr:port opens a new association: its ClientHello passes,
	// the peer is forgotten, and a fresh pion client is served.
	sc.SetReadDeadline(time.Time{})
	client.release()
	echoed = make(chan struct{})
	done = serveOne(t, server, clientAddr, echoed)
	clientEcho(t, clientShared.Lend(), raw.LocalAddr(), nil, echoed)
	if err := <-done; err != nil {
		t.Fatalf("second association: %v", err)
	}
	if s := sc.Stats(); s.Forgets != 1 {
		t.Fatalf("Forgets = %d, want 1", s.Forgets)
	}
}

func TestReadDeadlineFiresDuringStrayFlood(t *testing.T) {
	raw := listenLoopback(t)
	sc, err := strayfilter.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	flooder := listenLoopback(t)
	if err := sc.MarkClosed(flooder.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	stray := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				flooder.WriteTo(stray, raw.LocalAddr())
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	const deadline = 200 * time.Millisecond
	start := time.Now()
	sc.SetReadDeadline(start.Add(deadline))
	_, _, err = sc.ReadFrom(make([]byte, 1500))
	elapsed := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom during a stray flood = %v, want a deadline error", err)
	}
	// Generous bound: the point is that strays do not extend the read.
	if elapsed > 10*deadline {
		t.Fatalf("ReadFrom returned after %v with a %v deadline", elapsed, deadline)
	}
	if sc.Stats().Strays[record.ReasonAlert] == 0 {
		t.Fatal("the flood never reached the filter")
	}
}

func TestCloseUnblocksReaders(t *testing.T) {
	sc, err := strayfilter.New(listenLoopback(t))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := sc.ReadFrom(make([]byte, 100))
			errc <- err
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the readers block; the assertion does not depend on it
	sc.Close()
	for range 2 {
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("blocked read ended with %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock a reader")
		}
	}
}

func TestOptionsAreValidated(t *testing.T) {
	pc := listenLoopback(t)
	table, err := conntrack.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pc   net.PacketConn
		opts []strayfilter.Option
		want string
	}{
		{"nil conn", nil, nil, "packet conn is nil"},
		{"zero quiet period", pc, []strayfilter.Option{strayfilter.WithQuietPeriod(0)}, "quiet period 0s"},
		{"negative quiet period", pc, []strayfilter.Option{strayfilter.WithQuietPeriod(-time.Second)}, "quiet period -1s"},
		{"cap 0", pc, []strayfilter.Option{strayfilter.WithMaxQuietPeers(0)}, "max quiet peers 0"},
		{"cap too large", pc, []strayfilter.Option{strayfilter.WithMaxQuietPeers(1 << 31)}, "max quiet peers 2147483648"},
		{"nil logger", pc, []strayfilter.Option{strayfilter.WithLogger(nil)}, "logger is nil"},
		{"nil clock", pc, []strayfilter.Option{strayfilter.WithClock(nil)}, "clock is nil"},
		{"nil table", pc, []strayfilter.Option{strayfilter.WithTable(nil)}, "table is nil"},
		{"nil exempt", pc, []strayfilter.Option{strayfilter.WithExempt(nil)}, "exempt function is nil"},
		{"table and quiet period", pc, []strayfilter.Option{strayfilter.WithTable(table), strayfilter.WithQuietPeriod(time.Second)}, "WithQuietPeriod conflicts with WithTable"},
	} {
		_, err := strayfilter.New(tc.pc, tc.opts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, strayfilter.ErrInvalidOption) {
			t.Errorf("%s: err = %v, want ErrInvalidOption naming %q", tc.name, err, tc.want)
		}
	}
}

func TestMarkClosedRejectsNonIPAddress(t *testing.T) {
	sc, err := strayfilter.New(listenLoopback(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []net.Addr{nil, &net.UnixAddr{Name: "/tmp/x", Net: "unixgram"}, &net.UDPAddr{}} {
		if err := sc.MarkClosed(addr); !errors.Is(err, conntrack.ErrInvalidPeer) {
			t.Errorf("MarkClosed(%v) = %v, want ErrInvalidPeer", addr, err)
		}
	}
	if err := sc.MarkClosedAddrPort(netip.AddrPort{}); !errors.Is(err, conntrack.ErrInvalidPeer) {
		t.Errorf("MarkClosedAddrPort(invalid) = %v", err)
	}
}

func loadRecord(t *testing.T, name string) []byte {
	t.Helper()
	for _, rf := range loadRecords(t) {
		if rf.Name == name {
			return rf.Data
		}
	}
	t.Fatalf("no record %s in testdata", name)
	return nil
}
