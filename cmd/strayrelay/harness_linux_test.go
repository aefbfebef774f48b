package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

type echoer struct {
	c            *dtlsv3.Conn
	sent, echoed atomic.Int64 // echoed: on time
	got          map[int]bool // every echo, by number
	// maxGap is the longest time between two echoes.
	maxGap, last time.Duration
	err          error
}

func (e *echoer) run(stop <-chan struct{}, every time.Duration) {
	buf := make([]byte, 64)
	start := time.Now()
	e.got = map[int]bool{}
	note := func(b []byte) (int, bool) {
		k, err := strconv.Atoi(string(b))
		if err != nil {
			return 0, false
		}
		if !e.got[k] {
			e.got[k] = true
			now := time.Since(start)
			if len(e.got) > 1 {
				e.maxGap = max(e.maxGap, now-e.last)
			}
			e.last = now
		}
		return k, true
	}
	seq := 0
	defer func() {
		// Late echoes still count.
		e.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, err := e.c.Read(buf)
			if err != nil {
				return
			}
			note(buf[:n])
		}
	}()
	for ; ; seq++ {
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
		if _, err := e.c.Write([]byte(strconv.Itoa(seq))); err != nil {
			e.err = err
			return
		}
		e.sent.Add(1)
		e.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, err := e.c.Read(buf)
			if err != nil {
				break // late, or lost: the next record goes on
			}
			if k, ok := note(buf[:n]); ok && k == seq {
				e.echoed.Add(1)
				break
			}
		}
	}
}

func (e *echoer) lost() (n, run int) {
	cur := 0
	for k := range int(e.sent.Load()) {
		if e.got[k] {
			cur = 0
			continue
		}
		n++
		cur++
		run = max(run, cur)
	}
	return n, run
}

type relayProcess struct {
	t         *testing.T
	pid       int
	logs      *logLines
	addr      netip.AddrPort
	notify    *net.UnixConn
	handovers int
	failFile  string // its existence makes a successor fail
}

func startRelayProcess(t *testing.T, upstream string, args ...string) *relayProcess {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	p := &relayProcess{t: t, notify: notifySocket(t), failFile: filepath.Join(t.TempDir(), "successor-fails")}
	cmd := command(context.Background(), append([]string{"-listen", "127.0.0.1:0", "-upstream", upstream, "-stats-interval", "0"}, args...)...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+p.notify.LocalAddr().String(), "STRAYRELAY_TEST_FAIL_FILE="+p.failFile)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.logs = &logLines{added: make(chan struct{}, 1)}
	go p.logs.read(stderr)
	p.addr = netip.MustParseAddrPort(p.logs.wait(t, `msg=relaying listen=(\S+)`)[1])
	readNotify(t, p.notify) // READY=1
	p.pid = cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(p.pid, syscall.SIGKILL) // a failed test's
		if t.Failed() {
			p.logs.mu.Lock()
			t.Logf("the relay's log:\n%s", strings.Join(p.logs.lines, "\n"))
			p.logs.mu.Unlock()
		}
	})
	return p
}

func (p *relayProcess) handOver() string {
	t := p.t
	t.Helper()
	p.handovers++
	syscall.Kill(p.pid, syscall.SIGUSR2)
	return p.awaitSuccessor()
}

func (p *relayProcess) awaitSuccessor() string {
	t := p.t
	t.Helper()
	m := p.logs.waitNth(t, `msg="handed over" successor_pid=(\d+) took=(\S+)`, p.handovers)
	next, _ := strconv.Atoi(m[1])
	if next == p.pid || next == 0 {
		t.Fatalf("hand-over %d: to pid %q", p.handovers, m[0])
	}
	// The successor's READY=1 comes before or after.
	want := fmt.Sprintf("MAINPID=%d", next)
	var told []string
	for len(told) < 3 && !slices.Contains(told, want) {
		told = append(told, readNotify(t, p.notify))
	}
	if !slices.Contains(told, want) {
		t.Errorf("hand-over %d: systemd was told %q; want %s among them", p.handovers, told, want)
	}
	waitExit(t, p.pid)
	p.pid = next
	return m[2]
}

func (p *relayProcess) stop() {
	syscall.Kill(p.pid, syscall.SIGTERM)
	waitExit(p.t, p.pid)
}

func connectEchoers(t *testing.T, addr netip.AddrPort, n int) []*echoer {
	t.Helper()
	echoers := make([]*echoer, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range echoers {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			c, err := dtlsv3.Dial("udp", net.UDPAddrFromAddrPort(addr), fixture.ClientV3(t))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), fixture.HandshakeTimeout)
				err = c.HandshakeContext(ctx)
				cancel()
			}
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			t.Cleanup(func() { c.Close() })
			echoers[i] = &echoer{c: c}
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return echoers
}

func startEchoing(t *testing.T, when string, echoers []*echoer) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, e := range echoers {
		wg.Add(1)
		go func() { defer wg.Done(); e.run(done, 10*time.Millisecond) }()
	}
	waitEchoes(t, when, echoers, make([]int64, len(echoers)))
	return func() {
		close(done)
		wg.Wait()
	}
}

func waitEchoes(t *testing.T, when string, echoers []*echoer, before []int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for i, e := range echoers {
		for e.echoed.Load() < before[i]+3 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: client %d echoed %d records (err %v)", when, i, e.echoed.Load()-before[i], e.err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func waitExit(t *testing.T, pid int) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == nil && ws.ExitStatus() != 0 {
			err = fmt.Errorf("exit status %d", ws.ExitStatus())
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("process %d: %v", pid, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("process %d still runs after handing over", pid)
	}
}

type fakeSystemd struct {
	c     *net.UnixConn
	mu    sync.Mutex
	store map[string]*os.File
	order []string
	msgs  []string
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	s := &fakeSystemd{c: notifySocket(t), store: map[string]*os.File{}}
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, 1024)
		for {
			n, oobn, _, _, err := s.c.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			var files []*os.File
			if scms, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, scm := range scms {
					fds, _ := syscall.ParseUnixRights(&scm)
					for _, fd := range fds {
						files = append(files, os.NewFile(uintptr(fd), "stored"))
					}
				}
			}
			msg := string(buf[:n])
			fields := map[string]string{}
			for _, kv := range strings.Split(msg, "\n") {
				k, v, _ := strings.Cut(kv, "=")
				fields[k] = v
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, msg)
			switch {
			case fields["FDSTORE"] == "1" && len(files) == 1:
				name := fields["FDNAME"]
				s.store[name] = files[0]
				s.order = append(s.order, name)
			case fields["FDSTOREREMOVE"] == "1":
				if f := s.store[fields["FDNAME"]]; f != nil {
					f.Close()
					delete(s.store, fields["FDNAME"])
				}
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *fakeSystemd) waitStored(t *testing.T, what string, n int) {
	t.Helper()
	dtlstest.WaitFor(t, what+" in the store", func() bool { return s.stored() == n })
}

func (s *fakeSystemd) stored() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.store)
}

func (s *fakeSystemd) start(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	s.mu.Lock()
	var names []string
	var files []*os.File
	for _, name := range s.order {
		if f := s.store[name]; f != nil && !slices.Contains(names, name) {
			// The child gets copies: the store closes its own on removal.
			fd, err := syscall.Dup(int(f.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
			files = append(files, os.NewFile(uintptr(fd), name))
		}
	}
	s.mu.Unlock()
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
	sh := `LISTEN_PID=$$ LISTEN_FDS=` + strconv.Itoa(len(files)) + ` LISTEN_FDNAMES=` + strings.Join(names, ":") + ` exec "$0" "$@"`
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", sh, os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), "STRAYRELAY_MAIN=1", "NOTIFY_SOCKET="+s.c.LocalAddr().String(), "FDSTORE=65536",
		"GORACE=atexit_sleep_ms=0") // a race-enabled process would wait a second as it exits
	cmd.ExtraFiles = files
	return cmd
}

func (s *fakeSystemd) run(t *testing.T, ctx context.Context, args ...string) (*logLines, *exec.Cmd) {
	t.Helper()
	cmd := s.start(t, ctx, args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &logLines{added: make(chan struct{}, 1)}
	go logs.read(stderr)
	t.Cleanup(func() { cmd.Process.Kill() }) // a failed test's
	return logs, cmd
}
