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

// echoer is a pion v3 client echoing a numbered record every interval
// (waiting up to half a second for each echo), which notes every echo it
// gets, late ones included: a record is lost only if its echo never came.
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

// lost returns how many records never came back, and the longest run of
// them in a row.
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

// TestHandoverOnSIGUSR2 runs the strayrelay process in front of a pion
// echo server with clients echoing every 10 ms, and hands it over to a
// new process with SIGUSR2 five times: every client goes on echoing on
// the association it has (the server completes no new handshake), none
// loses more than one record in a row, systemd is told the new main pid,
// and each old process exits. A successor that cannot start leaves the
// old relay serving.
func TestHandoverOnSIGUSR2(t *testing.T) {
	srv, server := dtlstest.ServePionV3(t, fixture.ServerV3(t))
	p := startRelayProcess(t, server.String(), "-metrics", "127.0.0.1:0")

	n := 50
	switch {
	case testing.Short():
		n = 10
	case os.Getenv("STRAYRELAY_HANDOVER_CLIENTS") != "":
		n, _ = strconv.Atoi(os.Getenv("STRAYRELAY_HANDOVER_CLIENTS")) // .ci/run: 1,000
	}
	echoers := connectEchoers(t, p.addr, n)
	stopEchoing := startEchoing(t, "before the first hand-over", echoers)

	rounds := 5
	if v := os.Getenv("STRAYRELAY_HANDOVER_ROUNDS"); v != "" {
		rounds, _ = strconv.Atoi(v) // 0: the same load without a hand-over, to compare
	}
	var took []string
	for round := 1; round <= rounds; round++ {
		before := make([]int64, n)
		for i, e := range echoers {
			before[i] = e.echoed.Load()
		}
		took = append(took, p.handOver())
		waitEchoes(t, fmt.Sprintf("round %d", round), echoers, before)
	}
	// A successor that fails (here: it exits at once) leaves this one
	// serving, and the clients never notice.
	before := make([]int64, n)
	for i, e := range echoers {
		before[i] = e.echoed.Load()
	}
	if err := os.WriteFile(p.failFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(p.pid, syscall.SIGUSR2)
	p.logs.wait(t, `msg="the hand-over failed; serving on"`)
	os.Remove(p.failFile)
	waitEchoes(t, "after the failed hand-over", echoers, before)
	stopEchoing()
	// At the default size the machine carries the load without losing a
	// record, so every loss is the hand-overs'. At 1,000 clients
	// (STRAYRELAY_HANDOVER_CLIENTS, a measurement) a two-core machine
	// loses records under the load alone: the numbers are reported for
	// comparison with STRAYRELAY_HANDOVER_ROUNDS=0, not judged.
	measuring := os.Getenv("STRAYRELAY_HANDOVER_CLIENTS") != ""
	var gap time.Duration
	var sent, lost, worstRun, losers int
	for i, e := range echoers {
		l, run := e.lost()
		if e.err != nil || !measuring && (run > 1 || l > rounds) {
			t.Errorf("client %d: sent %d, %d never echoed, %d of them in a row (want at most one per hand-over, never two in a row), err %v", i, e.sent.Load(), l, run, e.err)
		}
		gap = max(gap, e.maxGap)
		sent += int(e.sent.Load())
		lost += l
		worstRun = max(worstRun, run)
		if l > 0 {
			losers++
		}
	}
	t.Logf("%d clients echoing every 10 ms, %d hand-overs, each %v (freeze to the successor serving); %d records sent, %d never echoed (%d clients lost any, at most %d in a row); the longest a client waited between two echoes: %v",
		n, rounds, took, sent, lost, losers, worstRun, gap)
	if a := srv.Accepted.Load(); a != int64(n) {
		t.Errorf("the server completed %d handshakes; want %d, one per client", a, n)
	}
	p.stop()
}

// relayProcess is the strayrelay process, through its hand-overs.
type relayProcess struct {
	t         *testing.T
	pid       int
	logs      *logLines
	addr      netip.AddrPort
	notify    *net.UnixConn
	handovers int
	failFile  string // its existence makes a successor fail
}

// startRelayProcess starts strayrelay in front of upstream, as a Type=notify
// unit's main process, with this test as the subreaper that sees each old
// process exit: each successor is the child of the process before it.
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

// handOver sends SIGUSR2 and waits until the successor serves, systemd
// was told its pid and the old process exited; it returns how long the
// relay said the hand-over took.
func (p *relayProcess) handOver() string {
	t := p.t
	t.Helper()
	p.handovers++
	syscall.Kill(p.pid, syscall.SIGUSR2)
	return p.awaitSuccessor()
}

// awaitSuccessor is handOver after the signal.
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

// connectEchoers connects n pion v3 clients to addr and completes their
// handshakes, eight at a time: live associations, not handshakes under way.
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

// startEchoing has every client echo every 10 ms until the returned func
// stops them, and returns once each has echoed three records.
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

// fakeSystemd is the notification socket of a unit with a file
// descriptor store: it keeps what FDSTORE=1 messages attach, by FDNAME,
// and forgets what FDSTOREREMOVE=1 names.
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

// waitStored waits until the store holds exactly n descriptors: the
// stopped relay sent them all, but the store reads them on its own time.
func (s *fakeSystemd) waitStored(t *testing.T, what string, n int) {
	t.Helper()
	dtlstest.WaitFor(t, what+" in the store", func() bool { return s.stored() == n })
}

func (s *fakeSystemd) stored() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.store)
}

// start runs the relay as systemd starts a unit with a store: the stored
// descriptors from 3 on, named in LISTEN_FDNAMES, for the process named in
// LISTEN_PID (set by a shell that then execs the relay, keeping its pid).
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

// run starts the relay as start does, with its log.
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

// TestRestartThroughSystemdStore stops the relay as systemctl restart
// does, with FileDescriptorStoreMax= set, while clients echo every 10 ms,
// and starts the next one on what the store kept, five times: every client
// goes on echoing on its association (the server completes no new
// handshake), and each new relay empties the store of what it took.
func TestRestartThroughSystemdStore(t *testing.T) {
	srv, server := dtlstest.ServePionV3(t, fixture.ServerV3(t))
	sd := newFakeSystemd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"-listen", "127.0.0.1:0", "-upstream", server.String(), "-stats-interval", "0"}
	// start runs the next relay on what the store holds.
	start := func() (*logLines, *exec.Cmd) { return sd.run(t, ctx, args...) }
	logs, cur := start()
	addr := netip.MustParseAddrPort(logs.wait(t, `msg=relaying listen=(\S+)`)[1])

	n := 10
	if v := os.Getenv("STRAYRELAY_HANDOVER_CLIENTS"); v != "" && !testing.Short() {
		n, _ = strconv.Atoi(v) // .ci/run: 1,000
	}
	echoers := connectEchoers(t, addr, n)
	stopEchoing := startEchoing(t, "before the first restart", echoers)

	var gaps []time.Duration
	for round := 1; round <= 5; round++ {
		before := make([]int64, n)
		for i, e := range echoers {
			before[i] = e.echoed.Load()
		}
		began := time.Now()
		cur.Process.Signal(syscall.SIGTERM)
		logs.wait(t, `msg="handed over to systemd's file descriptor store" upstream_sockets=`+strconv.Itoa(n)+`$`)
		if err := cur.Wait(); err != nil {
			t.Fatalf("round %d: the stopped relay: %v", round, err)
		}
		sd.waitStored(t, fmt.Sprintf("round %d: the listening socket, %d upstream sockets and the state", round, n), n+2)
		logs, cur = start()
		logs.wait(t, `msg="carried on from a hand-over" associations=`+strconv.Itoa(n)+` failed=0`)
		gaps = append(gaps, time.Since(began).Round(time.Millisecond))
		waitEchoes(t, fmt.Sprintf("round %d", round), echoers, before)
		dtlstest.WaitFor(t, "the store emptied of what the new relay took", func() bool { return sd.stored() == 0 })
	}
	stopEchoing()
	measuring := os.Getenv("STRAYRELAY_HANDOVER_CLIENTS") != ""
	var sent, lost int
	for i, e := range echoers {
		l, run := e.lost()
		if e.err != nil || !measuring && (run > 1 || l > 5) {
			t.Errorf("client %d: sent %d, %d never echoed, %d in a row (want at most one per restart, never two in a row), err %v", i, e.sent.Load(), l, run, e.err)
		}
		sent += int(e.sent.Load())
		lost += l
	}
	if a := srv.Accepted.Load(); a != int64(n) {
		t.Errorf("the server completed %d handshakes; want %d, one per client", a, n)
	}
	t.Logf("%d clients echoing every 10 ms, 5 restarts through the store, each %v from SIGTERM to the next relay carrying on; %d records sent, %d never echoed", n, gaps, sent, lost)
	cur.Process.Signal(syscall.SIGTERM)
	cur.Wait()
}

// TestHandoverWithOpenSSLAndMbedTLS hands the relay over in the middle of
// each of five `openssl s_client` sessions with the seed's Mbed TLS server
// (one client at a time, echo, close): the session's echo comes back
// through the successor, and the client the server closed before stays
// quiet across the next hand-over: a stray it sends while the relay is
// handing over earns it the server's close_notify again and never reaches
// the server, which fails on none.
func TestHandoverWithOpenSSLAndMbedTLS(t *testing.T) {
	dtlstest.RequireOpenSSL(t)
	mbed := dtlstest.StartMbedTLS(t)
	p := startRelayProcess(t, mbed.Addr.String())
	var quiet *net.UDPConn // the last session's client port, once it closed
	// Application data at epoch 1, larger than the alert it earns (the
	// echo never sends more than the client sent).
	stray := append([]byte{0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 100}, make([]byte, 100)...)
	for round := 1; round <= 5; round++ {
		local := dtlstest.FreePort(t)
		s := dtlstest.StartOpenSSL(t, local, p.addr)
		s.Handshaken(t)
		if quiet != nil {
			// Sent as the hand-over starts: the relay reads it frozen or
			// after, from the same socket.
			syscall.Kill(p.pid, syscall.SIGUSR2)
			quiet.Write(stray)
			p.handovers++
			p.awaitSuccessor()
			quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 256)
			n, err := quiet.Read(buf)
			if err != nil || n < 13 || buf[0] != 0x15 {
				t.Fatalf("round %d: the quiet client's stray got %x, %v; want the server's closing alert again", round, buf[:n], err)
			}
			quiet.Close()
		} else {
			p.handOver()
		}
		msg := fmt.Sprintf("hello %d", round)
		s.Echo(t, msg)
		mbed.WaitFor(t, "the echo", func(l string) bool { return mbed.Count("ok") == round })
		s.Kill()
		var err error
		quiet, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(local), net.UDPAddrFromAddrPort(p.addr))
		if err != nil {
			t.Fatal(err)
		}
	}
	quiet.Close()
	if f := mbed.Count("fail"); f != 0 {
		t.Errorf("the Mbed TLS server failed %d times:\n%s", f, strings.Join(mbed.Lines(), "\n"))
	}
	p.stop()
}

// TestRestartThroughStoreWithOpenSSLAndMbedTLS is
// TestHandoverWithOpenSSLAndMbedTLS with the restarts systemd makes
// through its file descriptor store: each of five `openssl s_client`
// sessions with the seed's Mbed TLS server gets its echo from the relay
// started after the one it shook hands through, and the client the server
// closed before, whose stray arrives while no relay runs, stays quiet: the
// next relay answers it with the server's close_notify and the server
// never sees it.
func TestRestartThroughStoreWithOpenSSLAndMbedTLS(t *testing.T) {
	dtlstest.RequireOpenSSL(t)
	mbed := dtlstest.StartMbedTLS(t)
	sd := newFakeSystemd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"-listen", "127.0.0.1:0", "-upstream", mbed.Addr.String(), "-stats-interval", "0"}
	logs, cur := sd.run(t, ctx, args...)
	addr := netip.MustParseAddrPort(logs.wait(t, `msg=relaying listen=(\S+)`)[1])
	var quiet *net.UDPConn
	stray := append([]byte{0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 100}, make([]byte, 100)...)
	for round := 1; round <= 5; round++ {
		local := dtlstest.FreePort(t)
		s := dtlstest.StartOpenSSL(t, local, addr)
		s.Handshaken(t)
		cur.Process.Signal(syscall.SIGTERM)
		logs.wait(t, `msg="handed over to systemd's file descriptor store"`)
		if err := cur.Wait(); err != nil {
			t.Fatalf("round %d: the stopped relay: %v", round, err)
		}
		sd.waitStored(t, fmt.Sprintf("round %d: the listening socket, the session's upstream socket and the state", round), 3)
		if quiet != nil {
			quiet.Write(stray) // no relay runs: it waits in the listening socket
		}
		logs, cur = sd.run(t, ctx, args...)
		logs.wait(t, `msg="carried on from a hand-over" associations=1 failed=0`)
		if quiet != nil {
			quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 256)
			n, err := quiet.Read(buf)
			if err != nil || n < 13 || buf[0] != 0x15 {
				t.Fatalf("round %d: the quiet client's stray got %x, %v; want the server's closing alert again", round, buf[:n], err)
			}
			quiet.Close()
		}
		s.Echo(t, fmt.Sprintf("hello %d", round))
		mbed.WaitFor(t, "the echo", func(l string) bool { return mbed.Count("ok") == round })
		s.Kill()
		var err error
		quiet, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(local), net.UDPAddrFromAddrPort(addr))
		if err != nil {
			t.Fatal(err)
		}
	}
	quiet.Close()
	if f := mbed.Count("fail"); f != 0 {
		t.Errorf("the Mbed TLS server failed %d times:\n%s", f, strings.Join(mbed.Lines(), "\n"))
	}
	cur.Process.Signal(syscall.SIGTERM)
	cur.Wait()
}
