package dtlstest

import (
	"net"
	"strings"
	"testing"
)

// A gnutls-serv whose IPv4 port another socket holds still runs (on IPv6)
// and prints "listening on": it must count as a failed start, or a test
// talks to whoever holds 127.0.0.1:port.
func TestGnuTLSOnATakenPortFailsToStart(t *testing.T) {
	requireTool(t, "gnutls-serv", "gnutls-bin")
	taken, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.LocalAddr().(*net.UDPAddr).AddrPort()
	certPath, keyPath := CertFiles(t)
	s, err := startGnuTLSOn(t, port, certPath, keyPath)
	if err == nil {
		t.Fatalf("gnutls-serv on a taken port started; it said:\n%s", strings.Join(s.Lines(), "\n"))
	}
	if !strings.Contains(err.Error(), "bind() failed") {
		t.Fatalf("err = %v, want gnutls-serv's bind failure", err)
	}
}

// The servers the relay tests run start, and serve on the address they
// report.
func TestExternalServersStart(t *testing.T) {
	for name, start := range map[string]func(testing.TB) *ExternalServer{
		"gnutls-serv":      StartGnuTLS,
		"openssl s_server": StartOpenSSLServer,
	} {
		t.Run(name, func(t *testing.T) {
			s := start(t)
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(s.Addr.Port())})
			if err == nil {
				c.Close()
				t.Fatalf("%v is free: the server does not hold the port it reported", s.Addr)
			}
		})
	}
}
