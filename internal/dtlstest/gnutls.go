package dtlstest

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RequireGnuTLS skips the test when gnutls-cli and gnutls-serv are
// missing, and fails it under CI, which installs them.
func RequireGnuTLS(t testing.TB) {
	t.Helper()
	requireTool(t, "gnutls-cli", "gnutls-bin")
}

// GnuTLSClient runs `echo <msg> | gnutls-cli --udp --insecure` (DTLS 1.2)
// against addr and checks that the server's echo of msg came back.
func GnuTLSClient(addr netip.AddrPort, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "gnutls-cli", "--udp", "--insecure",
		"--port", strconv.Itoa(int(addr.Port())), addr.Addr().String())
	cmd.Stdin = strings.NewReader(msg + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), err
	}
	if !strings.Contains(string(out), "- Handshake was completed") || !strings.Contains(string(out), "\n"+msg+"\n") {
		return string(out), fmt.Errorf("gnutls-cli printed no echo of %q", msg)
	}
	return string(out), nil
}
