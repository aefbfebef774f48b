//go:build unix

package benchmarks

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// restartClients is how many pion v3 clients echo through the relay,
// every 10 ms, while it restarts: 100, or STRAYRELAY_RESTART_CLIENTS.
func restartClients() int {
	if n, err := strconv.Atoi(os.Getenv("STRAYRELAY_RESTART_CLIENTS")); err == nil && n > 0 {
		return n
	}
	return 100
}

// BenchmarkRestart restarts the relay in front of a pion v3 echo server
// while restartClients() clients echo through it every 10 ms, once per
// iteration, side by side: strayrelay handing over to a new process
// (SIGUSR2), strayrelay killed and started again (cold), the same with
// clients and server using connection IDs (cold-cid), and nginx's UDP
// stream proxy reloaded (SIGHUP). Per restart it reports the
// clients that echo again within 3 s (recovered-%), the longest a client
// went without an echo (gap-ms, counting from the signal, 3,000 when some
// never recovered), and the handshakes the server completed again
// (rehandshakes).
func BenchmarkRestart(b *testing.B) {
	for _, impl := range []string{"strayrelay-handover", "strayrelay-cold", "strayrelay-cold-cid", "nginx-reload"} {
		b.Run("impl="+impl, func(b *testing.B) {
			serverCfg, clientCfg := fixture.ServerV3(b), fixture.ClientV3(b)
			if strings.HasSuffix(impl, "-cid") {
				serverCfg, clientCfg = fixture.ServerV3CID(b), fixture.ClientV3CID(b)
			}
			srv, server := dtlstest.ServePionV3(b, serverCfg)
			var restart func()
			var addr netip.AddrPort
			switch impl {
			case "nginx-reload":
				p := startNginx(b, server)
				addr = p.addr
				worker := regexp.MustCompile(`start worker process`)
				restart = func() {
					n := len(p.out.Matches(worker))
					p.cmd.Process.Signal(syscall.SIGHUP)
					p.out.WaitNth(b, worker, n+1)
				}
			default:
				h := startRestartable(b, server)
				addr = h.addr
				restart = h.handOver
				if strings.HasPrefix(impl, "strayrelay-cold") {
					restart = h.cold
				}
			}
			n := restartClients()
			clients := dialEchoers(b, addr, n, clientCfg)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, c := range clients {
				wg.Add(1)
				go func() { defer wg.Done(); c.run(stop) }()
			}
			defer func() { close(stop); wg.Wait() }()
			for _, c := range clients { // every client echoing before the first restart
				for c.lastEcho().IsZero() {
					time.Sleep(time.Millisecond)
				}
			}
			var recovered, rehandshakes int64
			var gap time.Duration
			for b.Loop() {
				accepted := srv.Accepted.Load()
				signal := time.Now()
				restart()
				deadline := signal.Add(3 * time.Second)
				back := 0
				for _, c := range clients {
					for c.lastEcho().Before(signal) && time.Now().Before(deadline) {
						time.Sleep(2 * time.Millisecond)
					}
					if l := c.lastEcho(); l.After(signal) {
						back++
						gap = max(gap, c.gapAround(signal))
					} else {
						gap = 3 * time.Second
					}
				}
				recovered += int64(back)
				rehandshakes += srv.Accepted.Load() - accepted
			}
			b.ReportMetric(100*float64(recovered)/float64(b.N*n), "recovered-%")
			b.ReportMetric(float64(gap)/1e6, "gap-ms")
			b.ReportMetric(float64(rehandshakes)/float64(b.N), "rehandshakes")
		})
	}
}

// echoClient echoes a record every 10 ms and keeps when echoes came.
type echoClient struct {
	c     *dtlsv3.Conn
	mu    sync.Mutex
	times []time.Time
}

func (e *echoClient) run(stop <-chan struct{}) {
	buf := make([]byte, 64)
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if _, err := e.c.Write([]byte(strconv.Itoa(seq))); err != nil {
			return
		}
		e.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := e.c.Read(buf); err == nil {
			e.mu.Lock()
			e.times = append(e.times, time.Now())
			e.mu.Unlock()
		}
	}
}

func (e *echoClient) lastEcho() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.times) == 0 {
		return time.Time{}
	}
	return e.times[len(e.times)-1]
}

// gapAround is the time between the last echo before t and the first
// after it.
func (e *echoClient) gapAround(t time.Time) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	var before time.Time
	for _, at := range e.times {
		if at.After(t) {
			if before.IsZero() {
				return at.Sub(t)
			}
			return at.Sub(before)
		}
		before = at
	}
	return 0
}

func dialEchoers(b *testing.B, addr netip.AddrPort, n int, cfg *dtlsv3.Config) []*echoClient {
	var out []*echoClient
	for range n {
		c, err := dtlsv3.Dial("udp", net.UDPAddrFromAddrPort(addr), cfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), fixture.HandshakeTimeout)
		err = c.HandshakeContext(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		out = append(out, &echoClient{c: c})
	}
	return out
}

// restartable is a strayrelay process that can be handed over or killed
// and started again on the same port.
type restartable struct {
	b      *testing.B
	server netip.AddrPort
	addr   netip.AddrPort
	cmd    *exec.Cmd
	out    *dtlstest.ExternalServer // what it and its successors printed
	pid    atomic.Int64             // the process serving now
	overs  int
}

func startRestartable(b *testing.B, server netip.AddrPort) *restartable {
	h := &restartable{b: b, server: server}
	h.start("127.0.0.1:0")
	b.Cleanup(func() { syscall.Kill(int(h.pid.Load()), syscall.SIGKILL) })
	return h
}

func (h *restartable) start(listen string) {
	h.cmd = exec.Command(binary(h.b, "strayrelay"), "-listen", listen, "-upstream", h.server.String(), "-stats-interval", "0")
	h.out = startProcess(h.b, h.cmd, listening)
	h.addr = h.out.Addr
	h.pid.Store(int64(h.cmd.Process.Pid))
	h.overs = 0
}

var (
	listening  = regexp.MustCompile(`msg=relaying listen=(\S+)`)
	handedOver = regexp.MustCompile(`msg="handed over" successor_pid=(\d+)`)
)

// handOver sends SIGUSR2 and returns once the successor serves.
func (h *restartable) handOver() {
	h.overs++
	syscall.Kill(int(h.pid.Load()), syscall.SIGUSR2)
	m := h.out.WaitNth(h.b, handedOver, h.overs)
	pid, _ := strconv.Atoi(m[1])
	h.pid.Store(int64(pid))
}

// cold kills the relay and starts a new one on the same address.
func (h *restartable) cold() {
	syscall.Kill(int(h.pid.Load()), syscall.SIGKILL)
	h.cmd.Wait()
	h.start(h.addr.String())
}
