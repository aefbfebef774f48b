package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"testing"
	"time"

	"golang.org/x/sys/unix"

	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/pionv3"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// echoer is a pion v3 client echoing a numbered record every interval,
// counting what never came back.
type echoer struct {
	c            *dtlsv3.Conn
	sent, echoed atomic.Int64
	// lostRun is the longest run of records in a row that did not come
	// back; lostNow the current one.
	lostRun, lostNow int64
	// maxGap is the longest time between two echoes.
	maxGap, last time.Duration
	err          error
}

func (e *echoer) run(stop <-chan struct{}, every time.Duration) {
	buf := make([]byte, 64)
	start := time.Now()
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
		msg := strconv.Itoa(seq)
		if _, err := e.c.Write([]byte(msg)); err != nil {
			e.err = err
			return
		}
		e.sent.Add(1)
		e.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		got := false
		for !got {
			n, err := e.c.Read(buf)
			if err != nil {
				break // lost: the next record goes on
			}
			got = string(buf[:n]) == msg // an older echo, late, is skipped
		}
		if got {
			now := time.Since(start)
			if e.echoed.Load() > 0 {
				e.maxGap = max(e.maxGap, now-e.last)
			}
			e.last = now
			e.echoed.Add(1)
			e.lostNow = 0
		} else {
			e.lostNow++
			e.lostRun = max(e.lostRun, e.lostNow)
		}
	}
}

// TestHandoverOnSIGUSR2 runs the strayrelay process in front of a pion
// echo server with clients echoing every 10 ms, and hands it over to a
// new process with SIGUSR2 five times: every client goes on echoing on
// the association it has (the server completes no new handshake), none
// loses more than one record in a row, systemd is told the new main pid,
// and each old process exits. A successor that cannot start leaves the
// old relay serving.
func TestHandoverOnSIGUSR2(t *testing.T) {
	ln, err := pionv3.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, fixture.ServerV3(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := dtlstest.Serve(ln, false, nil)
	defer func() {
		ln.Close()
		srv.Stop()
	}()
	// Each successor is the child of the process before it, which exits:
	// as a subreaper this test inherits them and can see each exit.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	notify := notifySocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := command(ctx, "-listen", "127.0.0.1:0", "-upstream", ln.Addr().String(), "-stats-interval", "0", "-metrics", "127.0.0.1:0")
	failFile := filepath.Join(t.TempDir(), "successor-fails")
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+notify.LocalAddr().String(), "STRAYRELAY_TEST_FAIL_FILE="+failFile)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &logLines{added: make(chan struct{}, 1)}
	go logs.read(stderr)
	addr := netip.MustParseAddrPort(logs.wait(t, `msg=relaying listen=(\S+)`)[1])
	readNotify(t, notify) // READY=1
	pid := cmd.Process.Pid
	defer func() { syscall.Kill(pid, syscall.SIGKILL) }() // a failed test's

	n := 50
	if testing.Short() {
		n = 10
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	echoers := make([]*echoer, n)
	for i := range echoers {
		c, err := dtlsv3.Dial("udp", net.UDPAddrFromAddrPort(addr), fixture.ClientV3(t))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		e := &echoer{c: c}
		echoers[i] = e
		wg.Add(1)
		go func() { defer wg.Done(); e.run(stop, 10*time.Millisecond) }()
	}
	time.Sleep(200 * time.Millisecond) // every client echoing

	var took []string
	for round := 1; round <= 5; round++ {
		before := make([]int64, n)
		for i, e := range echoers {
			before[i] = e.echoed.Load()
		}
		syscall.Kill(pid, syscall.SIGUSR2)
		m := logs.waitNth(t, `msg="handed over" successor_pid=(\d+) took=(\S+)`, round)
		next, _ := strconv.Atoi(m[1])
		took = append(took, m[2])
		if next == pid || next == 0 {
			t.Fatalf("round %d: handed over to pid %q", round, m[0])
		}
		// The successor's READY=1 comes before or after.
		want := fmt.Sprintf("MAINPID=%d", next)
		var told []string
		for len(told) < 3 && !slices.Contains(told, want) {
			told = append(told, readNotify(t, notify))
		}
		if !slices.Contains(told, want) {
			t.Errorf("round %d: systemd was told %q; want %s among them", round, told, want)
		}
		waitExit(t, pid)
		pid = next
		waitEchoes(t, fmt.Sprintf("round %d", round), echoers, before)
	}
	// A successor that fails (here: it exits at once) leaves this one
	// serving, and the clients never notice.
	if err := os.WriteFile(failFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before := make([]int64, n)
	for i, e := range echoers {
		before[i] = e.echoed.Load()
	}
	syscall.Kill(pid, syscall.SIGUSR2)
	logs.wait(t, `msg="the hand-over failed; serving on"`)
	os.Remove(failFile)
	waitEchoes(t, "after the failed hand-over", echoers, before)
	close(stop)
	wg.Wait()
	var gap time.Duration
	for i, e := range echoers {
		if e.err != nil || e.lostRun > 1 {
			t.Errorf("client %d: sent %d, echoed %d, at most %d lost in a row (want 1), err %v", i, e.sent.Load(), e.echoed.Load(), e.lostRun, e.err)
		}
		gap = max(gap, e.maxGap)
	}
	t.Logf("%d clients echoing every 10 ms, 5 hand-overs: each took %v (freeze to the successor serving); the longest a client waited between two echoes: %v", n, took, gap)
	if a := srv.Accepted.Load(); a != int64(n) {
		t.Errorf("the server completed %d handshakes; want %d, one per client", a, n)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	waitExit(t, pid)
}

// waitEchoes waits until every client echoed three more records than
// before.
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

// waitExit waits until pid, a child of this process, has exited.
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
