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
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// The test binary doubles as strayrelay: started with STRAYRELAY_MAIN=1 it
// runs main, so the tests below exercise the real process (flags, signals,
// exit codes) without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("STRAYRELAY_MAIN") == "1" {
		if _, ok := os.LookupEnv("STRAYRELAY_HANDOVER"); ok {
			// A successor that fails, when TestHandoverOnSIGUSR2 asks.
			if _, err := os.Stat(os.Getenv("STRAYRELAY_TEST_FAIL_FILE")); err == nil {
				os.Exit(3)
			}
		}
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
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-rcvbuf", "0"}, 2, "-rcvbuf 0: must be at least 1"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-readers", "0"}, 2, "-readers 0: must be at least 1"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-readers", "65"}, 1, "readers 65: must be 1 to 64"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-log-format", "xml"}, 2, `-log-format "xml": want text or json`},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-pprof"}, 2, "-pprof needs -metrics"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-metrics", ":9090", "-pprof"}, 2, "must be a loopback address"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-metrics", "9090"}, 2, `-metrics "9090": address 9090: missing port`},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:4434", "-metrics", taken(t)}, 1, "address already in use"},
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

// taken returns a TCP address something else listens on until the test
// ends.
func taken(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestVersion(t *testing.T) {
	out, err := command(context.Background(), "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("-version: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`^strayrelay \S+.* go1\.\d+`).Match(out) {
		t.Fatalf("-version printed %q; want strayrelay, the module version and the Go version", out)
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	out, err := command(context.Background(), "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("-h: %v\n%s", err, out)
	}
	for _, f := range []string{"-listen", "-upstream", "-quiet", "-idle", "-max-associations", "-log-level", "-stats-interval", "-expvar", "-handshake-timeout", "-max-quiet-peers", "-network", "-max-unverified", "-unverified-timeout", "-close-linger", "-close-echo", "-metrics", "-pprof", "-version", "-log-format", "-rcvbuf", "-sndbuf", "-readers"} {
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
	return l.waitNth(t, re, 1)
}

// waitNth returns the submatches of the nth line matching re.
func (l *logLines) waitNth(t *testing.T, re string, nth int) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		k := 0
		for _, line := range l.lines {
			if m := rx.FindStringSubmatch(line); m != nil {
				if k++; k == nth {
					l.mu.Unlock()
					return m
				}
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

// TestRelayProcess starts strayrelay in front of a naive server as systemd
// would (NOTIFY_SOCKET set), relays a pion client, reads its stats line,
// its expvar counters, its Prometheus metrics, health check and pprof
// index, re-resolves the upstream on SIGHUP and relays again, and stops it
// with SIGTERM.
func TestRelayProcess(t *testing.T) {
	naive := dtlstest.NewNaiveServer(t, 2*time.Second, false)
	notify := notifySocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := command(ctx, "-listen", "127.0.0.1:0", "-upstream", naive.Addr().String(),
		"-stats-interval", "100ms", "-expvar", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-pprof")
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+notify.LocalAddr().String())
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
	vars := logs.wait(t, `msg="serving expvar" url=(\S+)`)[1]
	metricsURL := logs.wait(t, `msg="serving metrics" url=(\S+)`)[1]
	if got := readNotify(t, notify); got != "READY=1" {
		t.Fatalf("systemd was told %q, want READY=1", got)
	}
	base := strings.TrimSuffix(metricsURL, "/metrics")
	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while relaying: %d %s", code, body)
	}
	if code, body := get(t, base+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ with -pprof: %d %.200s", code, body)
	}

	relayOnce(t, ctx, addr, naive, "through the binary")
	line := logs.wait(t, `msg=stats .*strayrelay_opened_total=1 .*strayrelay_server_closed_total=1 .*`)[0]

	code, expo := get(t, metricsURL)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		"# TYPE strayrelay_opened_total counter", "strayrelay_opened_total 1",
		"# TYPE strayrelay_live_associations gauge", "# TYPE strayrelay_pending_associations gauge",
		"# TYPE strayrelay_unverified_associations gauge", "# TYPE strayrelay_quiet_clients gauge",
		"strayrelay_quiet_clients 1", `strayrelay_strays_total{reason=`, "go_goroutines",
	} {
		if !strings.Contains(expo, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The stats line names every metric /metrics exports of the relay.
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (strayrelay_\S+) (counter|gauge)$`).FindAllStringSubmatch(expo, -1) {
		if !strings.Contains(line, " "+m[1]+"=") {
			t.Errorf("the stats line does not name %s:\n%s", m[1], line)
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^strayrelay_\w+`).FindAllString(expo, -1) {
		if !strings.HasSuffix(m, "_total") && !regexp.MustCompile(`# TYPE `+m+` gauge`).MatchString(expo) {
			t.Errorf("%s is neither a counter ending in _total nor a gauge", m)
		}
	}

	code, body := get(t, vars)
	if code != http.StatusOK {
		t.Fatalf("expvar: %d", code)
	}
	var ev struct {
		Strayrelay map[string]uint64 `json:"strayrelay"`
	}
	if err := json.Unmarshal([]byte(body), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Strayrelay["opened"] != 1 || ev.Strayrelay["to_server"] == 0 {
		t.Fatalf("expvar counters %v: want one association opened and datagrams relayed", ev.Strayrelay)
	}

	// SIGHUP resolves the upstream again and the relay goes on.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logs.wait(t, `msg="upstream resolved" upstream=`+regexp.QuoteMeta(naive.Addr().String())+` addr=\S+ was=\S+ changed=false`)
	relayOnce(t, ctx, addr, naive, "after SIGHUP")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v (want exit 0)", err)
	}
	logs.wait(t, `msg=stopped `)
	if got := readNotify(t, notify); got != "STOPPING=1" {
		t.Fatalf("systemd was told %q at the end, want STOPPING=1", got)
	}
}

// relayOnce runs a pion client through the relay to the naive server,
// which echoes one message and closes.
func relayOnce(t *testing.T, ctx context.Context, addr netip.AddrPort, naive *dtlstest.NaiveServer, msg string) {
	t.Helper()
	c, err := dtlsv3.Dial("udp", net.UDPAddrFromAddrPort(addr), fixture.ClientV3(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hctx, hcancel := context.WithTimeout(ctx, fixture.HandshakeTimeout)
	defer hcancel()
	if err := c.HandshakeContext(hctx); err != nil {
		t.Fatalf("handshake through strayrelay: %v", err)
	}
	c.Write([]byte(msg))
	if got := <-naive.Echoed; got != msg {
		t.Fatalf("server got %q, want %q", got, msg)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// notifySocket is a stand-in for systemd's notification socket.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("nothing on the notification socket: %v", err)
	}
	return string(buf[:n])
}

// TestMetricsCoverStats: every counter of relay.Stats is a metric (and so
// on the stats line); the strays are one metric with a reason label.
func TestMetricsCoverStats(t *testing.T) {
	keys := map[string]bool{}
	for _, m := range metrics {
		if keys[m.Key] {
			t.Errorf("%s exported twice", m.Key)
		}
		keys[m.Key] = true
		if !m.Gauge && !strings.HasSuffix(m.Name, "_total") {
			t.Errorf("counter %s does not end in _total", m.Name)
		}
	}
	for k := range (relay.Stats{}).Map() {
		if k == "strays" || strings.HasPrefix(k, "strays_") {
			continue
		}
		if !keys[k] {
			t.Errorf("relay counter %q is not exported", k)
		}
	}
}

// TestJSONLogs: -log-format json writes one JSON object per line.
func TestJSONLogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := command(ctx, "-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:9", "-log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] != "relaying" || rec["listen"] == nil {
		t.Fatalf("first log line %q: %v; want a JSON record of the relay starting", line, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
}
