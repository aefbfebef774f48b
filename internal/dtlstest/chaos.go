package dtlstest

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
	"github.com/straydtls/straydtls/udprelay"
)

var chaosSeed = flag.Uint64("chaos.seed", 0, "replay a chaos run with this seed (0: the test's fixed seeds)")

// ChaosSeeds returns the seeds a chaos test runs with: the -chaos.seed flag
// if set, else the given fixed ones, so CI is repeatable and a failure
// names the seed that replays it.
func ChaosSeeds(fixed ...uint64) []uint64 {
	if *chaosSeed != 0 {
		return []uint64{*chaosSeed}
	}
	return fixed
}

// ChaosRun drives many clients through a chaos network to a server that
// echoes one message per association and closes it, and checks what the
// filter and the application saw.
type ChaosRun struct {
	Seed    uint64
	Workers int // concurrent clients
	Rounds  int // associations per client, every other one from the same addr:port
	// Dial runs a client handshake over uc, which is connected to the
	// chaos network.
	Dial func(uc *net.UDPConn) (net.Conn, error)
	// Rebinding makes the network a NAT that moves every other client to
	// a new port between its handshake and its message (Connection IDs).
	Rebinding bool

	network                *udprelay.Relay
	rebinds, reboundEchoed atomic.Int64

	mu     sync.Mutex
	closed map[netip.AddrPort]bool // peers whose association the server closed
	bad    []string

	attempts, handshakes, echoed atomic.Int64
	accepted, bogus              atomic.Int64
}

var chaosMessage = regexp.MustCompile(`^w[0-9]+ r[0-9]+( probe)?$`)

// OnDrop is the filter's drop hook: a datagram may be dropped only from a
// peer the server closed.
func (c *ChaosRun) OnDrop(peer netip.AddrPort, reason record.Reason) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed[peer] {
		c.bad = append(c.bad, fmt.Sprintf("dropped a %v datagram from %v, which the server never closed", reason, peer))
	}
}

// Network builds the chaos network in front of server: 10% loss, 5%
// duplicates, 30% delayed by up to 40 ms.
func (c *ChaosRun) Network(t *testing.T, server netip.AddrPort) (*udprelay.Relay, *udprelay.Chaos) {
	t.Helper()
	chaos := udprelay.NewChaos(c.Seed, 0.10, 0.05, 0.30, 40*time.Millisecond)
	relay, err := udprelay.New(server, chaos.Hook)
	if err != nil {
		t.Fatal(err)
	}
	c.network = relay
	return relay, chaos
}

// Serve is the application: each accepted connection must carry a real
// client's message; it is echoed and the association closed.
func (c *ChaosRun) Serve(ln net.Listener) *sync.WaitGroup {
	c.mu.Lock()
	if c.closed == nil {
		c.closed = map[netip.AddrPort]bool{}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if listenerClosed(err) {
				return
			}
			if err != nil {
				continue
			}
			c.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 2048)
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				for {
					n, err := conn.Read(buf)
					if err != nil {
						break
					}
					if !chaosMessage.Match(buf[:n]) {
						c.bogus.Add(1)
					}
					conn.Write(buf[:n])
					if !bytes.HasSuffix(buf[:n], []byte(" probe")) {
						break // the message: one echo, then close
					}
				}
				// Recorded before Close, which starts the quiet period.
				c.mu.Lock()
				c.closed[conn.RemoteAddr().(*net.UDPAddr).AddrPort()] = true
				c.mu.Unlock()
				conn.Close()
			}()
		}
	}()
	return &wg
}

// Clients runs the workers to the chaos network's address.
func (c *ChaosRun) Clients(t *testing.T, addr netip.AddrPort) {
	var wg sync.WaitGroup
	for w := range c.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local *net.UDPAddr
			for r := range c.Rounds {
				if r%2 == 0 {
					local = nil // a fresh port; the next round reuses it
				}
				uc, err := rebind(local, addr)
				if err != nil {
					t.Errorf("worker %d round %d: %v", w, r, err)
					return
				}
				local = uc.LocalAddr().(*net.UDPAddr)
				c.attempts.Add(1)
				conn, err := c.Dial(uc)
				if err != nil {
					uc.Close()
					continue // a handshake may fail under 10% loss
				}
				c.handshakes.Add(1)
				rebound := false
				if c.Rebinding && (w+r)%2 == 1 {
					if _, err := c.network.Rebind(local.AddrPort()); err == nil {
						c.rebinds.Add(1)
						rebound = true
					}
				}
				msg := fmt.Sprintf("w%d r%d", w, r)
				buf := make([]byte, 2048)
				// A moved client probes first: the first record from a new
				// address may be echoed to the old one (see EchoRetry).
				if rebound && EchoRetry(conn, msg+" probe", buf, 10, 200*time.Millisecond) == 0 {
					conn.Close()
					uc.Close()
					continue
				}
				if EchoRetry(conn, msg, buf, 10, 200*time.Millisecond) > 0 {
					c.echoed.Add(1)
					if rebound {
						c.reboundEchoed.Add(1)
					}
				}
				conn.Close()
				uc.Close()
			}
		}()
	}
	wg.Wait()
}

// rebind dials addr from local, the port the worker's previous round
// used (nil for a fresh one). Closing a socket that a pion goroutine is
// still reading from releases its port only once that read returns, so
// the bind waits for the release, at most a second.
func rebind(local *net.UDPAddr, addr netip.AddrPort) (*net.UDPConn, error) {
	deadline := time.Now().Add(time.Second)
	for {
		uc, err := net.DialUDP("udp", local, net.UDPAddrFromAddrPort(addr))
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return uc, err
		}
		time.Sleep(time.Millisecond)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Check reports what went wrong: a drop from a live peer, a bogus
// connection, or too little getting through for the run to mean anything.
func (c *ChaosRun) Check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	bad := c.bad
	c.mu.Unlock()
	for _, b := range bad {
		t.Errorf("seed %d: %s", c.Seed, b)
	}
	if n := c.bogus.Load(); n != 0 {
		t.Errorf("seed %d: %d bogus connections reached the application", c.Seed, n)
	}
	if a, h := c.accepted.Load(), c.attempts.Load(); a > h {
		t.Errorf("seed %d: %d connections accepted for %d client handshakes", c.Seed, a, h)
	}
	if e, a := c.echoed.Load(), c.attempts.Load(); e < a/3 {
		t.Errorf("seed %d: only %d of %d associations echoed: the run proves little", c.Seed, e, a)
	}
	if c.Rebinding && c.reboundEchoed.Load() < c.rebinds.Load()/3 {
		t.Errorf("seed %d: %d of %d clients the NAT moved were echoed: the server did not follow them", c.Seed, c.reboundEchoed.Load(), c.rebinds.Load())
	}
	t.Logf("seed %d: %d associations attempted, %d handshakes, %d echoed, %d accepted by the server; %d clients moved to a new port after their handshake, %d of them echoed",
		c.Seed, c.attempts.Load(), c.handshakes.Load(), c.echoed.Load(), c.accepted.Load(), c.rebinds.Load(), c.reboundEchoed.Load())
}

// RunChaosAdapter is the chaos test of an adapter: listen starts it on
// loopback with the options given (the filter's drop hook among them), and
// dial runs a client handshake. With rebinding, the network moves every
// other client to a new port mid-association (see ChaosRun.Rebinding).
func RunChaosAdapter(t *testing.T, listen func(opts ...demux.Option) (*demux.Listener, error), dial func(uc *net.UDPConn) (net.Conn, error), rebinding bool) {
	for _, seed := range ChaosSeeds(1, 2) {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			checkGoroutines := CheckGoroutines(t)
			run := &ChaosRun{Seed: seed, Workers: 6, Rounds: 4, Dial: dial, Rebinding: rebinding}
			ln, err := listen(demux.WithHandshakeTimeout(5*time.Second), demux.WithFilter(strayfilter.WithDropHook(run.OnDrop)))
			if err != nil {
				t.Fatal(err)
			}
			served := run.Serve(ln)
			network, chaos := run.Network(t, ln.Addr().(*net.UDPAddr).AddrPort())
			run.Clients(t, network.Addr())

			// The filter's counters against the chaos network's log: every
			// datagram it sent to the server was read and passed or dropped,
			// but those the kernel dropped at the socket because its queue
			// was full (a burst on a loaded machine), which no reader sees.
			local := ln.Addr().(*net.UDPAddr).AddrPort()
			deadline := time.Now().Add(10 * time.Second)
			for {
				s := ln.Filter().Stats()
				sent := chaos.Sent[udprelay.ToServer].Load()
				kernel, _ := SocketDrops(local)
				if s.Passed+s.TotalStrays()+kernel == sent {
					if kernel > 0 {
						t.Logf("the kernel dropped %d of the %d datagrams sent to the server: its socket's queue was full", kernel, sent)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the filter saw %d datagrams (%d passed, %d dropped) and the kernel dropped %d at the socket, of the %d the network sent to the server",
						s.Passed+s.TotalStrays(), s.Passed, s.TotalStrays(), kernel, sent)
				}
				time.Sleep(5 * time.Millisecond)
			}
			run.Check(t)
			t.Logf("filter: %d passed, %d strays dropped", ln.Filter().Stats().Passed, ln.Filter().Stats().TotalStrays())
			network.Close()
			ln.Close()
			served.Wait()
			checkGoroutines()
		})
	}
}
