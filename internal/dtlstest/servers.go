package dtlstest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/straydtls/straydtls/internal/fixture"
)

// requireTool skips t when a command the test runs is not installed, but
// fails it under CI (CI=true), whose .ci/run installs every one: a test
// that CI skips proves nothing.
func requireTool(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	msg := fmt.Sprintf("%s not installed (apt-get install -y %s); .ci/run installs it", name, pkg)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// CertFiles writes the test certificate and its key as PEM files in a
// temporary directory, for servers outside Go.
func CertFiles(t testing.TB) (certPath, keyPath string) {
	t.Helper()
	cert := fixture.Certificate(t)
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("test key is %T, want ECDSA", cert.PrivateKey)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// ExternalServer is a process run on loopback for a test or a benchmark (a
// DTLS server in another language, a relay), with what it printed.
type ExternalServer struct {
	Addr netip.AddrPort
	cmd  *exec.Cmd

	mu    sync.Mutex
	lines []string
	seen  chan struct{} // signalled on every new line
}

// Lines returns what the server printed so far.
func (s *ExternalServer) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// Count returns how many lines so far start with prefix.
func (s *ExternalServer) Count(prefix string) int {
	n := 0
	for _, l := range s.Lines() {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// Contains reports whether the server printed line.
func (s *ExternalServer) Contains(line string) bool {
	return slices.Contains(s.Lines(), line)
}

// WaitFor waits until the server prints a line that matches, and fails
// the test with everything it printed if none does within
// HandshakeTimeout.
func (s *ExternalServer) WaitFor(t testing.TB, what string, match func(line string) bool) {
	t.Helper()
	timeout := time.After(fixture.HandshakeTimeout)
	for !slices.ContainsFunc(s.Lines(), match) {
		select {
		case <-s.seen:
		case <-timeout:
			t.Fatalf("timed out waiting for the server to say %s; it said:\n%s", what, strings.Join(s.Lines(), "\n"))
		}
	}
}

// Matches returns the submatches of every line so far that matches re.
func (s *ExternalServer) Matches(re *regexp.Regexp) [][]string {
	var out [][]string
	for _, l := range s.Lines() {
		if m := re.FindStringSubmatch(l); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// WaitNth waits until the nth line matching re is printed and returns its
// submatches, failing the test with everything printed if it is not
// within HandshakeTimeout.
func (s *ExternalServer) WaitNth(t testing.TB, re *regexp.Regexp, nth int) []string {
	t.Helper()
	timeout := time.After(fixture.HandshakeTimeout)
	for {
		if ms := s.Matches(re); len(ms) >= nth {
			return ms[nth-1]
		}
		select {
		case <-s.seen:
		case <-timeout:
			t.Fatalf("timed out waiting for line %d matching %q; it said:\n%s", nth, re, strings.Join(s.Lines(), "\n"))
		}
	}
}

// stop interrupts the process and kills it if it has not exited 5 s
// later: an nginx master killed outright leaves its worker running.
func (s *ExternalServer) stop() {
	if s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// startExternal is StartProcess that fails t if the server does not start.
func startExternal(t testing.TB, cmd *exec.Cmd, ready func(line string) (netip.AddrPort, bool, error)) *ExternalServer {
	t.Helper()
	s, err := StartProcess(t, cmd, ready)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// StartProcess runs cmd until the test ends, collecting what it prints on
// stdout and stderr line by line. ready reads each line until it reports
// the address the process serves on, or says why it cannot serve (a port
// taken); it runs on one goroutine and may keep what it needs between
// lines. StartProcess returns an error, with what the process printed, if
// ready fails or the process exits or stays unready for 10 s: callers that
// can try again (on another port) do. A process that did not start is
// stopped.
func StartProcess(t testing.TB, cmd *exec.Cmd, ready func(line string) (netip.AddrPort, bool, error)) (*ExternalServer, error) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	s := &ExternalServer{cmd: cmd, seen: make(chan struct{}, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	type result struct {
		addr netip.AddrPort
		err  error
	}
	started := make(chan result, 1)
	go func() {
		sc := bufio.NewScanner(out)
		found := false
		for sc.Scan() {
			l := sc.Text()
			if !found {
				ap, ok, err := ready(l)
				if err != nil {
					found = true
					started <- result{err: err}
				} else if ok {
					found = true
					started <- result{addr: ap}
					continue
				}
			}
			s.mu.Lock()
			s.lines = append(s.lines, l)
			s.mu.Unlock()
			select {
			case s.seen <- struct{}{}:
			default:
			}
		}
		if !found {
			started <- result{err: errors.New("exited before it was ready")}
		}
	}()
	var r result
	select {
	case r = <-started:
	case <-time.After(10 * time.Second):
		r.err = errors.New("did not start listening within 10 s")
	}
	if r.err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: %w; it said:\n%s", cmd.Path, r.err, strings.Join(s.Lines(), "\n"))
	}
	s.Addr = r.addr
	return s, nil
}

// StartMbedTLS builds and starts the seed's server: Mbed TLS (Debian's
// libmbedtls-dev) in the shape of its programs/ssl/dtls_server.c, which
// serves one client at a time with a stateless cookie exchange, echoes one
// message, closes and takes the first datagram from any address as a new
// connection (testdata/mbedtls_dtls_server.c). Each connection attempt
// prints a line: "hvr", "ok" or "fail -0x... <where>".
func StartMbedTLS(t testing.TB) *ExternalServer {
	t.Helper()
	requireTool(t, "gcc", "gcc")
	if _, err := os.Stat("/usr/include/mbedtls/ssl.h"); err != nil {
		msg := "Mbed TLS headers not installed (apt-get install -y libmbedtls-dev); .ci/run installs them"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin := filepath.Join(t.TempDir(), "mbedtls_dtls_server")
	src := filepath.Join(sourceDir(t), "testdata", "mbedtls_dtls_server.c")
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-o", bin, src, "-lmbedtls", "-lmbedx509", "-lmbedcrypto").CombinedOutput(); err != nil {
		t.Fatalf("building the Mbed TLS server: %v\n%s", err, out)
	}
	certPath, keyPath := CertFiles(t)
	return startExternal(t, exec.Command(bin, "127.0.0.1", "0", certPath, keyPath), func(l string) (netip.AddrPort, bool, error) {
		port, ok := strings.CutPrefix(l, "listening ")
		if !ok {
			return netip.AddrPort{}, false, nil
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return netip.AddrPort{}, false, fmt.Errorf("listening line %q: %w", l, err)
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(p)), true, nil
	})
}

// StartGnuTLS starts `gnutls-serv --udp --echo` (Debian's gnutls-bin) on
// a free loopback port. GnuTLS does not answer a client's close_notify.
//
// gnutls-serv cannot be told an address or report a port it picked, so the
// port is one that was free a moment ago. Another process may take it in
// between, and gnutls-serv then serves IPv6 alone on it and says so only in
// its IPv4 line: that is a failed start, tried again on another port, never
// a server whose 127.0.0.1 port belongs to someone else.
func StartGnuTLS(t testing.TB) *ExternalServer {
	t.Helper()
	requireTool(t, "gnutls-serv", "gnutls-bin")
	certPath, keyPath := CertFiles(t)
	var errs []error
	for range 5 {
		s, err := startGnuTLSOn(t, FreePort(t), certPath, keyPath)
		if err == nil {
			return s
		}
		errs = append(errs, err)
	}
	t.Fatal(errors.Join(errs...))
	return nil
}

// startGnuTLSOn starts gnutls-serv on port, and fails if it cannot take it.
func startGnuTLSOn(t testing.TB, port netip.AddrPort, certPath, keyPath string) (*ExternalServer, error) {
	cmd := exec.Command("gnutls-serv", "--udp", "--echo", "--port", strconv.Itoa(int(port.Port())),
		"--x509certfile", certPath, "--x509keyfile", keyPath)
	return StartProcess(t, cmd, func(l string) (netip.AddrPort, bool, error) { return gnutlsReady(port, l) })
}

// gnutlsReady reads gnutls-serv's IPv4 line, "UDP Echo Server listening on
// IPv4 0.0.0.0 port N...done" or "...bind() failed: ...".
func gnutlsReady(port netip.AddrPort, line string) (netip.AddrPort, bool, error) {
	if !strings.Contains(line, "listening on IPv4") {
		return netip.AddrPort{}, false, nil
	}
	if !strings.HasSuffix(line, "done") {
		return netip.AddrPort{}, false, fmt.Errorf("IPv4 port %d: %s", port.Port(), line)
	}
	return port, true, nil
}

// StartOpenSSLServer starts `openssl s_server -dtls1_2` on a loopback port
// it picks and reports ("ACCEPT 127.0.0.1:N"). s_server quits at EOF on its
// stdin, so that is held open until the test ends.
func StartOpenSSLServer(t testing.TB) *ExternalServer {
	t.Helper()
	RequireOpenSSL(t)
	certPath, keyPath := CertFiles(t)
	stdin, hold, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hold.Close()
		stdin.Close()
	})
	cmd := exec.Command("openssl", "s_server", "-dtls1_2", "-accept", "127.0.0.1:0", "-cert", certPath, "-key", keyPath)
	cmd.Stdin = stdin
	return startExternal(t, cmd, func(l string) (netip.AddrPort, bool, error) {
		addr, ok := strings.CutPrefix(l, "ACCEPT")
		if !ok {
			return netip.AddrPort{}, false, nil
		}
		ap, err := netip.ParseAddrPort(strings.TrimSpace(addr))
		if err != nil {
			return netip.AddrPort{}, false, fmt.Errorf("s_server did not say the port it picked (OpenSSL 3 does): %q: %w", l, err)
		}
		return ap, true, nil
	})
}

// FreePort returns a loopback UDP port that was free a moment ago, for a
// process that cannot bind port 0 and report what it got. Another process
// may take it before that one binds it: callers detect the failed bind and
// try again, or say why they cannot.
func FreePort(t testing.TB) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// sourceDir is this package's directory, where testdata lives: tests run
// with the working directory of the package under test.
func sourceDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate internal/dtlstest")
	}
	return filepath.Dir(file)
}
