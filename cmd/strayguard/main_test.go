package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

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
