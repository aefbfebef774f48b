package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/strayguard"
)

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
	reached := dtlstest.CountReads(server)
	strays := dtlstest.SendEvery(cs, srv, alert, time.Millisecond)
	strays.Await(t, 20)
	d.stop(t)
	if !strings.Contains(d.log(), "the programs stay attached") {
		t.Fatalf("no word that the programs stay:\n%s", d.log())
	}
	strays.Await(t, 20) // no strayguard runs meanwhile
	d = start(t, args...)
	if !strings.Contains(d.log(), "adopted=true") {
		t.Fatalf("the restart did not adopt the pinned state:\n%s", d.log())
	}
	strays.Await(t, 20)
	n := strays.Stop()

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
