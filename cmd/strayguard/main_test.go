package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/strayguard"
)

// The test binary doubles as strayguard: started with STRAYGUARD_MAIN=1 it
// runs main, so the tests below exercise the real process (flags, signals,
// exit codes) without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("STRAYGUARD_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "STRAYGUARD_MAIN=1")
	return cmd
}

// needBPF skips where the process may not load BPF programs, but not in
// CI, which runs as root on a kernel with tcx.
func needBPF(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root on Linux, so this must not be skipped")
		}
		t.Skip("strayguard needs root on Linux")
	}
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// pinDir is a pin directory of the test's own, removed with what is
// pinned in it when the test ends.
func pinDir(t *testing.T) string {
	t.Helper()
	dir := fmt.Sprintf("%s/test-cmd-%s-%d", strayguard.DefaultPinRoot, t.Name(), time.Now().UnixNano())
	t.Cleanup(func() {
		if err := strayguard.Remove(dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func taken(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestBadFlagsExitNonZero(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-port", "4433"}, 2, "-iface is required"},
		{[]string{"-iface", "lo"}, 2, "-port is required"},
		{[]string{"-iface", "lo", "-port", "4433,x"}, 2, `-port "4433,x": "x" is not a port`},
		{[]string{"-iface", "lo", "-port", "0"}, 2, `"0" is not a port`},
		{[]string{"-iface", "lo", "-port", "70000"}, 2, `"70000" is not a port`},
		{[]string{"-iface", "lo", "-port", "4433", "-log-level", "loud"}, 2, `-log-level "loud"`},
		{[]string{"-iface", "lo", "-port", "4433", "-pprof"}, 2, "-pprof needs -metrics"},
		{[]string{"-iface", "lo", "-port", "4433", "-metrics", ":9091", "-pprof"}, 2, "must be a loopback address"},
		{[]string{"-iface", "lo", "-detach", "-pin-dir", "none"}, 2, "-detach needs a -pin-dir"},
		{[]string{"-bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"-iface", "lo", "-port", "4433", "-quiet", "0s", "-pin-dir", "none"}, 1, "quiet period 0s must be positive"},
		{[]string{"-iface", "nosuch0", "-port", "4433", "-pin-dir", "none"}, 1, `interface "nosuch0"`},
		{[]string{"-iface", "lo", "-port", "4433", "-pin-dir", "/tmp/not-bpffs", "-metrics", "127.0.0.1:0"}, 1, "not on a bpf file system"},
		{[]string{"-iface", "lo", "-port", "4433", "-metrics", taken(t)}, 1, "address already in use"},
	} {
		out, err := command(context.Background(), c.args...).CombinedOutput()
		if code := exitCode(t, err); code != c.code || !strings.Contains(string(out), c.msg) {
			t.Errorf("strayguard %q: exit %d, output %q; want exit %d and %q", c.args, code, out, c.code, c.msg)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := command(context.Background(), "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "strayguard ") {
		t.Fatalf("-version: %v\n%s", err, out)
	}
}

// guardPrograms counts strayguard's programs attached to lo.
func guardPrograms(t *testing.T) int {
	t.Helper()
	n := 0
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: 1, Attach: at})
		if err != nil {
			t.Fatal(err)
		}
		for _, ap := range res.Programs {
			p, err := ebpf.NewProgramFromID(ap.ID)
			if err != nil {
				continue
			}
			if info, err := p.Info(); err == nil && strings.HasPrefix(info.Name, "stray_") {
				n++
			}
			p.Close()
		}
	}
	return n
}

// TestFailedStartsAttachNothing: a start that fails exits 1, says why, and
// leaves nothing attached or pinned: a port another strayguard guards,
// an unprivileged user.
func TestFailedStartsAttachNothing(t *testing.T) {
	needBPF(t)
	port := freePort(t)
	other, err := strayguard.Attach("lo", []uint16{port})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	before := guardPrograms(t)
	dir := pinDir(t)
	p := strconv.Itoa(int(port))

	out, err := command(context.Background(), "-iface", "lo", "-port", "1,"+p, "-pin-dir", dir).CombinedOutput()
	if code := exitCode(t, err); code != 1 || !strings.Contains(string(out), "port "+p+" on lo is already guarded") {
		t.Errorf("a guarded port: exit %d, output %q", code, out)
	}

	if setpriv, err := exec.LookPath("setpriv"); err == nil {
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", os.Args[0], "-iface", "lo", "-port", "1", "-pin-dir", "none")
		cmd.Env = append(os.Environ(), "STRAYGUARD_MAIN=1")
		out, err := cmd.CombinedOutput()
		if code := exitCode(t, err); code != 1 || !strings.Contains(string(out), "needs root, or CAP_BPF and CAP_NET_ADMIN") {
			t.Errorf("as nobody: exit %d, output %q", code, out)
		}
	} else {
		t.Log("setpriv not installed: the unprivileged start is not tried")
	}
	if after := guardPrograms(t); after != before {
		t.Fatalf("%d strayguard programs on lo after the failed starts, %d before", after, before)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("a failed start left its pin directory")
	}
}

// process is strayguard running as a process, with its log.
type process struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

// start runs strayguard with args and waits for its "guarding" line.
func start(t *testing.T, args ...string) *process {
	t.Helper()
	d := &process{cmd: command(context.Background(), args...), done: make(chan struct{})}
	out, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.stop(t) })
	ready := make(chan bool, 1)
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			d.mu.Lock()
			d.lines = append(d.lines, sc.Text())
			d.mu.Unlock()
			if strings.Contains(sc.Text(), "msg=guarding") {
				ready <- true
			}
		}
		d.cmd.Wait()
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("strayguard exited before guarding:\n%s", d.log())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("strayguard did not start guarding within 10 s:\n%s", d.log())
	}
	return d
}

func (d *process) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n")
}

// stop sends SIGTERM, as systemctl stop does, and waits for the exit.
func (d *process) stop(t *testing.T) {
	t.Helper()
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		t.Fatalf("strayguard did not stop on SIGTERM:\n%s", d.log())
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("strayguard exited %d on SIGTERM:\n%s", code, d.log())
	}
}

// stat returns the value of name in the last log line that has it.
func (d *process) stat(t *testing.T, name string) int {
	t.Helper()
	re := regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `=(\d+)`)
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := len(d.lines) - 1; i >= 0; i-- {
		if m := re.FindStringSubmatch(d.lines[i]); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	t.Fatalf("no %s in the log:\n%s", name, strings.Join(d.lines, "\n"))
	return 0
}

// TestRestartUnderStrays: with 1,000 quiet clients and a stray arriving
// every millisecond, strayguard stopped (SIGTERM) and started again lets no
// stray reach the server: the pinned programs filter while no process
// runs, the new one adopts them, and the counters carry on. -detach then
// removes them, and refuses while a strayguard runs.
func TestRestartUnderStrays(t *testing.T) {
	needBPF(t)
	const clients = 1000
	server, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	srv := server.LocalAddr().(*net.UDPAddr).AddrPort()
	dir := pinDir(t)
	args := []string{"-iface", "lo", "-port", strconv.Itoa(int(srv.Port())), "-pin-dir", dir, "-quiet", "1h", "-stats-interval", "0"}
	d := start(t, args...)
	if !strings.Contains(d.log(), "adopted=false") {
		t.Fatalf("a fresh start adopted something:\n%s", d.log())
	}

	// The server closes 1,000 associations: its alert to each client.
	alert := []byte{21, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 26}
	alert = append(alert, make([]byte, 26)...)
	cs := make([]*net.UDPConn, clients)
	for i := range cs {
		if cs[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		defer cs[i].Close()
		if _, err := server.WriteToUDPAddrPort(alert, cs[i].LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			t.Fatal(err)
		}
	}
	var reached atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := server.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			reached.Add(1)
		}
	}()
	stop, sent := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				sent <- n
				return
			case <-tick.C:
				cs[n%clients].WriteToUDPAddrPort(alert, srv) // the client's late close_notify
				n++
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	d.stop(t)
	if !strings.Contains(d.log(), "the programs stay attached") {
		t.Fatalf("no word that the programs stay:\n%s", d.log())
	}
	time.Sleep(50 * time.Millisecond) // no strayguard runs
	d = start(t, args...)
	if !strings.Contains(d.log(), "adopted=true") {
		t.Fatalf("the restart did not adopt the pinned state:\n%s", d.log())
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	n := <-sent

	out, err := command(context.Background(), "-iface", "lo", "-pin-dir", dir, "-detach").CombinedOutput()
	if code := exitCode(t, err); code != 1 || !strings.Contains(string(out), "held by another running strayguard") {
		t.Errorf("-detach while strayguard runs: exit %d, output %q", code, out)
	}
	d.stop(t)
	if got := d.stat(t, "strayguard_closing_alerts_total"); got != clients {
		t.Errorf("closing alerts counted across the restart: %d, want %d", got, clients)
	}
	if got := d.stat(t, "strayguard_quiet_clients"); got != clients {
		t.Errorf("quiet clients after the restart: %d, want %d", got, clients)
	}
	if got := d.stat(t, "strayguard_strays_total"); got != n || reached.Load() != 0 {
		t.Fatalf("%d strays sent across the restart, %d counted, %d reached the server", n, got, reached.Load())
	}
	t.Logf("%d strays across a stop and a start, all dropped; the counters carried on", n)

	if out, err := command(context.Background(), "-iface", "lo", "-pin-dir", dir, "-detach").CombinedOutput(); err != nil {
		t.Fatalf("-detach: %v\n%s", err, out)
	}
	cs[0].WriteToUDPAddrPort(alert, srv)
	dtlstest.WaitFor(t, "a quiet client's datagram through once strayguard was detached", func() bool { return reached.Load() == 1 })
}

// TestMetricsCoverStats: every counter of strayguard.Stats is a metric
// (and so on the stats line); the strays are one metric with a reason
// label.
func TestMetricsCoverStats(t *testing.T) {
	keys := map[string]bool{}
	for _, m := range metrics {
		keys[m.Key] = true
		if !m.Gauge && !strings.HasSuffix(m.Name, "_total") {
			t.Errorf("counter %s does not end in _total", m.Name)
		}
	}
	for k := range (strayguard.Stats{}).Map() {
		if k != "strays" && !keys[k] {
			t.Errorf("strayguard counter %q is not exported", k)
		}
	}
}
