package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/internal/dtlstest"
)

// The test binary doubles as strayrelay: started with STRAYRELAY_MAIN=1 it
// runs main, so the tests below exercise the real process (flags, signals,
// exit codes) without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("STRAYRELAY_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "STRAYRELAY_MAIN=1")
	return cmd
}

func TestBadFlagsExitNonZero(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-listen", "127.0.0.1:0"}, 2, "both -listen and -upstream are required"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-quiet", "-1s"}, 2, "-quiet -1s: must be positive"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-max-associations", "0"}, 2, "-max-associations 0: must be at least 1"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-max-unverified", "-3"}, 2, "-max-unverified -3: must be at least 1"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-close-linger", "-1s"}, 2, "-close-linger -1s: must not be negative"},
		{[]string{"-listen", "127.0.0.1:4999", "-upstream", "127.0.0.1:4999"}, 1, "upstream is the relay's own listening address"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-expvar", "0.0.0.0:9090"}, 2, "must be a loopback address"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-log-level", "loud"}, 2, `-log-level "loud"`},
		{[]string{"-bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"-listen", "192.0.2.1:4433", "-upstream", "127.0.0.1:4434"}, 1, "listen on"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1"}, 1, "upstream"},
	} {
		out, err := command(context.Background(), c.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(string(out), c.msg) {
			t.Errorf("strayrelay %q: exit %d, output %q; want exit %d and %q", c.args, code, out, c.code, c.msg)
		}
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	out, err := command(context.Background(), "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("-h: %v\n%s", err, out)
	}
	for _, f := range []string{"-listen", "-upstream", "-quiet", "-idle", "-max-associations", "-log-level", "-stats-interval", "-expvar", "-handshake-timeout", "-max-quiet-peers", "-network", "-max-unverified", "-unverified-timeout", "-close-linger", "-close-echo"} {
		if !strings.Contains(string(out), "  "+f+" ") && !strings.Contains(string(out), "  "+f+"\n") {
			t.Errorf("-h does not document %s:\n%s", f, out)
		}
	}
}

// logLines collects the process's log lines and lets the test wait for one.
type logLines struct {
	mu    sync.Mutex
	lines []string
	added chan struct{}
}

func (l *logLines) read(r io.Reader) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, s.Text())
		l.mu.Unlock()
		select {
		case l.added <- struct{}{}:
		default:
		}
	}
}

// wait returns the submatches of the first line matching re.
func (l *logLines) wait(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		for _, line := range l.lines {
			if m := rx.FindStringSubmatch(line); m != nil {
				l.mu.Unlock()
				return m
			}
		}
		all := strings.Join(l.lines, "\n")
		l.mu.Unlock()
		select {
		case <-l.added:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no log line matches %q; log:\n%s", re, all)
		}
	}
}

// TestRelayProcess starts strayrelay in front of a naive server, relays a
// pion client, reads its stats line and its expvar counters, and stops it
// with SIGTERM.
func TestRelayProcess(t *testing.T) {
	naive := dtlstest.NewNaiveServer(t, 2*time.Second, false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := command(ctx, "-listen", "127.0.0.1:0", "-upstream", naive.Addr().String(),
		"-stats-interval", "100ms", "-expvar", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &logLines{added: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() { logs.read(stderr); close(done) }()

	addr := netip.MustParseAddrPort(logs.wait(t, `msg=relaying listen=(\S+)`)[1])
	url := logs.wait(t, `msg="expvar counters" url=(\S+)`)[1]

	c, err := dtlsv3.Dial("udp", net.UDPAddrFromAddrPort(addr), dtlstest.ClientV3(t))
	if err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithTimeout(ctx, dtlstest.HandshakeTimeout)
	defer hcancel()
	if err := c.HandshakeContext(hctx); err != nil {
		t.Fatalf("handshake through strayrelay: %v", err)
	}
	c.Write([]byte("through the binary"))
	if got := <-naive.Echoed; got != "through the binary" {
		t.Fatalf("server got %q", got)
	}
	c.Close()

	logs.wait(t, `msg=stats .*opened=1 server_closed=1 `)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	var vars struct {
		Strayrelay map[string]uint64 `json:"strayrelay"`
	}
	err = json.NewDecoder(resp.Body).Decode(&vars)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if vars.Strayrelay["opened"] != 1 || vars.Strayrelay["to_server"] == 0 {
		t.Fatalf("expvar counters %v: want one association opened and datagrams relayed", vars.Strayrelay)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v (want exit 0)", err)
	}
	logs.wait(t, `msg=stopped `)
}
