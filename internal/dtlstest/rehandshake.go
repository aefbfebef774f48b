package dtlstest

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	dtlsv2 "github.com/pion/dtls/v2"
	"github.com/straydtls/straydtls/internal/fixture"
)

// ClientHello returns the first datagram a real pion v2 client sends: an
// epoch-0 ClientHello without cookie, caught on a socket that never answers.
func ClientHello(t testing.TB) []byte {
	t.Helper()
	return firstDatagram(t, func(ctx context.Context, uc *net.UDPConn) {
		cfg := fixture.ClientV2(t)
		cfg.ConnectContextMaker = func() (context.Context, func()) { return ctx, func() {} }
		if c, err := dtlsv2.Client(uc, cfg); err == nil {
			c.Close()
		}
	})
}

// firstDatagram runs client over a socket connected to one that never
// answers, returns the first datagram it sends, then cancels ctx and
// waits for client to return.
func firstDatagram(t testing.TB, client func(ctx context.Context, uc *net.UDPConn)) []byte {
	t.Helper()
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	uc, err := net.DialUDP("udp", nil, sink.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		client(ctx, uc)
	}()
	buf := make([]byte, 2048)
	sink.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := sink.ReadFromUDPAddrPort(buf)
	cancel()
	uc.Close()
	<-done
	if err != nil {
		t.Fatalf("catching a ClientHello: %v", err)
	}
	return buf[:n]
}

// OpenSSLSession is an `openssl s_client -dtls1_2` process with its stdin
// open: lines written are sent as application data, and Expect waits for
// the server's echo in its output.
type OpenSSLSession struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

// StartOpenSSL starts s_client from local (-bind) to addr.
func StartOpenSSL(t testing.TB, local, addr netip.AddrPort) *OpenSSLSession {
	t.Helper()
	cmd := exec.Command("openssl", "s_client", "-dtls1_2", "-bind", local.String(), "-connect", addr.String())
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &OpenSSLSession{cmd: cmd, in: in, lines: make(chan string, 256)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case s.lines <- sc.Text():
			default:
			}
		}
		close(s.lines)
	}()
	t.Cleanup(s.Kill)
	return s
}

// Echo sends line and waits until s_client prints it back.
func (s *OpenSSLSession) Echo(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
	s.Expect(t, "echo of "+line, func(l string) bool { return l == line })
}

// Handshaken waits until s_client reports its handshake complete.
func (s *OpenSSLSession) Handshaken(t testing.TB) {
	t.Helper()
	s.Expect(t, "the handshake", func(l string) bool { return strings.HasPrefix(l, "SSL handshake has read") })
}

// Expect waits until s_client prints a line that matches.
func (s *OpenSSLSession) Expect(t testing.TB, what string, match func(string) bool) {
	t.Helper()
	timeout := time.After(fixture.HandshakeTimeout)
	var seen []string
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("s_client exited before %s:\n%s", what, strings.Join(seen, "\n"))
			}
			if match(l) {
				return
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("no %s from s_client:\n%s", what, strings.Join(seen, "\n"))
		}
	}
}

// Kill ends the process the way a power cut ends a device: no close_notify.
func (s *OpenSSLSession) Kill() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}
