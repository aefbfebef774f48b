package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayguard"
)

// BenchmarkRelay is the relay benchmark: 16 clients, each with one record
// of 100 bytes in flight (it sends the next when the echo of the last came
// back), through each relay to an echo server, all on loopback:
//
//   - mode=dtls: pion v3 clients and a pion v3 echo server, what an
//     operator runs;
//   - mode=raw: DTLS-shaped datagrams against a keyless echo server that
//     plays the cookie exchange, which measures the relays alone.
//
// The relays run as processes of their own, so each one's CPU time can be
// read from /proc: impl=direct (no relay), impl=strayrelay (cmd/strayrelay),
// impl=naive (benchmarks/naiverelay: one datagram per system call, a
// goroutine per client), impl=epoll (benchmarks/epollrelay: one epoll
// loop batched both ways that filters nothing, a ceiling for the design)
// and, when nginx and its stream module are installed (Debian: nginx,
// libnginx-mod-stream), impl=nginx, its UDP stream proxy with one worker.
// strayrelay also runs with -readers 2 and with GOMAXPROCS=1. Reported:
// records/s, round-trip p50 and p99, the relay process's CPU time per
// record (relay-µs/rec), and for strayrelay its Go allocations per record
// (relay-allocs/rec, from its own /metrics).
func BenchmarkRelay(b *testing.B) {
	for _, mode := range []string{"raw", "dtls"} {
		for _, impl := range relayImpls {
			b.Run("mode="+mode+"/impl="+impl.name, func(b *testing.B) {
				var server netip.AddrPort
				if mode == "raw" {
					server = rawEchoServer(b)
				} else {
					server = dtlsEchoServer(b)
				}
				front := server
				var p *relayProcess
				if impl.start != nil {
					p = impl.start(b, server)
					front = p.addr
				}
				runRelayLoad(b, newRelayClients(b, mode, front), p)
			})
		}
	}
}

const (
	relayClients = 16
	relayRecord  = 100
)

// relayClient sends one record at a time and waits for its echo: over a
// plain UDP socket (raw mode, the whole record) or a pion connection (DTLS
// mode, the record's payload as application data).
type relayClient struct {
	c    net.Conn
	skip int // bytes of each record not written: pion adds its own header
}

// roundTrip sends msg and reads one datagram, sending again after a second
// of silence: loopback loses datagrams when a socket buffer overflows, and
// pion retransmits only handshake flights.
func (rc relayClient) roundTrip(msg, buf []byte) error {
	for try := 0; try < 5; try++ {
		if _, err := rc.c.Write(msg[rc.skip:]); err != nil {
			return err
		}
		rc.c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := rc.c.Read(buf); err == nil {
			return nil
		} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return err
		}
	}
	return errors.New("no answer after 5 tries")
}

func runRelayLoad(b *testing.B, clients []relayClient, p *relayProcess) {
	lat := make([][]time.Duration, len(clients))
	share := (b.N + len(clients) - 1) / len(clients)
	for i := range lat {
		lat[i] = make([]time.Duration, 0, share)
	}
	var cpu0 time.Duration
	var allocs0 float64
	if p != nil && !p.noCPU {
		cpu0 = p.cpu(b)
		allocs0 = p.allocs(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := dtlstest.Record(record.ContentTypeApplicationData, 1, uint64(i), make([]byte, relayRecord-13))
			buf := make([]byte, 2048)
			for range share {
				t0 := time.Now()
				if err := c.roundTrip(msg, buf); err != nil {
					errs <- err
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	n := float64(len(all))
	b.ReportMetric(n/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(all[len(all)/2])/1e3, "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100])/1e3, "p99-µs")
	if p != nil && !p.noCPU {
		// Each record crosses the relay twice: there and back.
		b.ReportMetric(float64(p.cpu(b)-cpu0)/1e3/n, "relay-µs/rec")
		if p.guard != nil {
			// On lo each datagram passes egress and then ingress; both
			// programs run for it, one of them only to find a port it
			// does not guard.
			b.ReportMetric(float64(p.cpu(b)-cpu0)/(2*n), "guard-ns/datagram")
		}
		if p.metrics != "" {
			b.ReportMetric((p.allocs(b)-allocs0)/n, "relay-allocs/rec")
		}
	}
	for _, c := range clients {
		c.c.Close()
	}
}

// rawEchoServer plays the server side of DTLS without keys: it answers a
// ClientHello without a cookie with a HelloVerifyRequest, one with the
// cookie with an encrypted-looking record (so a relay sees the handshake
// complete), and echoes anything else.
func rawEchoServer(b *testing.B) netip.AddrPort { return rawEchoServerAt(b, net.IPv4(127, 0, 0, 1)) }

// rawEchoServerAt is rawEchoServer on the address ip.
func rawEchoServerAt(b *testing.B, ip net.IP) netip.AddrPort {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
	if err != nil {
		b.Fatal(err)
	}
	raiseBuffers(pc)
	b.Cleanup(func() { pc.Close() })
	cookie := []byte("cookie!!")
	hvr := dtlstest.HelloVerify(cookie)
	finished := dtlstest.Record(record.ContentTypeHandshake, 1, 0, make([]byte, 40))
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			d := buf[:n]
			r := record.Inspect(d)
			if ch, ok := r.ClientHello(d); ok {
				d = hvr
				if len(ch.Cookie) > 0 {
					d = finished
				}
			}
			pc.WriteToUDPAddrPort(d, from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// newRelayClients starts the relay benchmarks' relayClients clients of
// mode ("raw" or "dtls") towards to.
func newRelayClients(b *testing.B, mode string, to netip.AddrPort) []relayClient {
	clients := make([]relayClient, relayClients)
	for i := range clients {
		if mode == "raw" {
			clients[i] = newRawClient(b, to, i)
		} else {
			clients[i] = newDTLSClient(b, to)
		}
	}
	return clients
}

func newRawClient(b *testing.B, to netip.AddrPort, i int) relayClient {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		b.Fatal(err)
	}
	rc := relayClient{c: c}
	var random [32]byte
	random[0], random[1] = byte(i), byte(time.Now().UnixNano())
	buf := make([]byte, 2048)
	// The cookie exchange: a relay admits the client only after it.
	if err := rc.roundTrip(dtlstest.Hello(random, nil), buf); err != nil {
		b.Fatalf("raw client %d: first ClientHello: %v", i, err)
	}
	if err := rc.roundTrip(dtlstest.Hello(random, []byte("cookie!!")), buf); err != nil {
		b.Fatalf("raw client %d: cookie echo: %v", i, err)
	}
	return rc
}

// raiseBuffers gives the echo server's socket room for every client's
// record at once, so the server is not what loses datagrams.
func raiseBuffers(c *net.UDPConn) {
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
}

func dtlsEchoServer(b *testing.B) netip.AddrPort { return dtlsEchoServerAt(b, net.IPv4(127, 0, 0, 1)) }

// dtlsEchoServerAt is dtlsEchoServer on the address ip.
func dtlsEchoServerAt(b *testing.B, ip net.IP) netip.AddrPort {
	ln, err := dtlsv3.Listen("udp4", &net.UDPAddr{IP: ip}, fixture.ServerV3(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(serveEcho(ln))
	return ln.Addr().(*net.UDPAddr).AddrPort()
}

func newDTLSClient(b *testing.B, to netip.AddrPort) relayClient {
	c, err := dtlsv3.Dial("udp4", net.UDPAddrFromAddrPort(to), fixture.ClientV3(b))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		b.Fatalf("handshake: %v", err)
	}
	return relayClient{c: c, skip: 13}
}

// relayImpls are the paths compared; start is nil for the direct one.
var relayImpls = []struct {
	name  string
	start func(b *testing.B, server netip.AddrPort) *relayProcess
}{
	{"direct", nil},
	// No relay, and a program at tcx of lo that does nothing: the ceiling
	// for a filter there.
	{"tcx-noop", startTCXNoop},
	// No relay: the server's own port, with strayguard's programs at lo;
	// with the kernel's BPF statistics on, for the programs' run time
	// (which the statistics' clock reads make dearer).
	{"strayguard", func(b *testing.B, server netip.AddrPort) *relayProcess { return startStrayguard(b, server, false) }},
	{"strayguard-stats", func(b *testing.B, server netip.AddrPort) *relayProcess { return startStrayguard(b, server, true) }},
	{"strayrelay", func(b *testing.B, server netip.AddrPort) *relayProcess { return startStrayrelay(b, server) }},
	// Two SO_REUSEPORT readers (-readers 2): does a second reading
	// goroutine pay on this machine?
	{"strayrelay-readers2", func(b *testing.B, server netip.AddrPort) *relayProcess {
		return startStrayrelay(b, server, "-readers", "2")
	}},
	{"strayrelay-procs1", func(b *testing.B, server netip.AddrPort) *relayProcess {
		return startStrayrelayEnv(b, server, []string{"GOMAXPROCS=1"})
	}},
	{"naive", startNaiveRelay},
	// A ceiling for the architecture strayrelay does not have: one epoll
	// loop on one thread, batched both ways, filtering nothing.
	{"epoll", func(b *testing.B, server netip.AddrPort) *relayProcess {
		if runtime.GOOS != "linux" {
			b.Skip("epollrelay is Linux only")
		}
		return startNaiveRelayNamed(b, "epollrelay", server)
	}},
	{"nginx", startNginx},
}

// relayProcess is a relay running as a process of its own, or strayguard's
// programs, which have none.
type relayProcess struct {
	cmd     *exec.Cmd
	addr    netip.AddrPort
	metrics string                   // strayrelay's /metrics URL
	out     *dtlstest.ExternalServer // what it printed (nginx)
	guard   *strayguard.Guard        // instead of cmd
	noCPU   bool                     // nothing measures the CPU it takes
}

// cpu is the user and system time of the process and its children (nginx's
// worker), from /proc; for strayguard, the run time of its programs.
func (p *relayProcess) cpu(b *testing.B) time.Duration {
	if p.guard != nil {
		in, out, err := p.guard.ProgramStats()
		if err != nil {
			b.Fatal(err)
		}
		return in.RunTime + out.RunTime
	}
	pids := []int{p.cmd.Process.Pid}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st := procStat(pid); len(st) > 2 && st[1] == strconv.Itoa(p.cmd.Process.Pid) {
			pids = append(pids, pid)
		}
	}
	var ticks int64
	for _, pid := range pids {
		st := procStat(pid)
		if len(st) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(st[11], 10, 64)
		s, _ := strconv.ParseInt(st[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// procStat returns the fields of /proc/pid/stat after the command name:
// state, ppid, ... (utime and stime are fields 11 and 12 of that slice).
func procStat(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

var mallocsRx = regexp.MustCompile(`(?m)^go_memstats_mallocs_total (\S+)$`)

// allocs is strayrelay's count of heap allocations so far.
func (p *relayProcess) allocs(b *testing.B) float64 {
	if p.metrics == "" {
		return 0
	}
	resp, err := http.Get(p.metrics)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := mallocsRx.FindSubmatch(body)
	if m == nil {
		b.Fatalf("no go_memstats_mallocs_total at %s", p.metrics)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "relaybench")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("go", "build", "-o", dir, "github.com/straydtls/straydtls/cmd/strayrelay", "github.com/straydtls/straydtls/benchmarks/naiverelay", "github.com/straydtls/straydtls/benchmarks/epollrelay").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return dir, nil
})

func binary(b *testing.B, name string) string {
	dir, err := buildOnce()
	if err != nil {
		b.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// startProcess runs cmd until the benchmark ends (dtlstest.StartProcess),
// serving at the address in the first submatch of the first line that
// matches rx.
func startProcess(b *testing.B, cmd *exec.Cmd, rx *regexp.Regexp) *dtlstest.ExternalServer {
	b.Helper()
	s, err := dtlstest.StartProcess(b, cmd, func(l string) (netip.AddrPort, bool, error) {
		m := rx.FindStringSubmatch(l)
		if m == nil {
			return netip.AddrPort{}, false, nil
		}
		ap, err := netip.ParseAddrPort(m[1])
		return ap, err == nil, err
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func startStrayrelay(b *testing.B, server netip.AddrPort, extra ...string) *relayProcess {
	return startStrayrelayEnv(b, server, nil, extra...)
}

func startStrayrelayEnv(b *testing.B, server netip.AddrPort, env []string, extra ...string) *relayProcess {
	args := append([]string{"-listen", "127.0.0.1:0", "-upstream", server.String(),
		"-metrics", "127.0.0.1:0", "-stats-interval", "0"}, extra...)
	cmd := exec.Command(binary(b, "strayrelay"), args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	// Two lines, in either order: the listening address and the metrics URL.
	listening := regexp.MustCompile(`msg=relaying listen=(\S+)`)
	serving := regexp.MustCompile(`msg="serving metrics" url=(\S+)`)
	var addr netip.AddrPort
	var metrics string
	_, err := dtlstest.StartProcess(b, cmd, func(l string) (netip.AddrPort, bool, error) {
		if m := listening.FindStringSubmatch(l); m != nil {
			ap, err := netip.ParseAddrPort(m[1])
			if err != nil {
				return ap, false, err
			}
			addr = ap
		}
		if m := serving.FindStringSubmatch(l); m != nil {
			metrics = m[1]
		}
		return addr, addr.IsValid() && metrics != "", nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return &relayProcess{cmd: cmd, addr: addr, metrics: metrics}
}

// startStrayguard attaches strayguard's programs at lo for the server's
// port and, with stats, turns on the kernel's BPF run-time statistics until
// the benchmark ends (they cost each run two clock reads).
func startStrayguard(b *testing.B, server netip.AddrPort, stats bool) *relayProcess {
	g, err := strayguard.Attach("lo", []uint16{server.Port()})
	if errors.Is(err, strayguard.ErrNotSupported) || errors.Is(err, strayguard.ErrPermission) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	if !stats {
		return &relayProcess{addr: server, guard: g, noCPU: true}
	}
	const sysctl = "/proc/sys/kernel/bpf_stats_enabled"
	was, err := os.ReadFile(sysctl)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(sysctl, []byte("1"), 0); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.WriteFile(sysctl, was, 0) })
	return &relayProcess{addr: server, guard: g}
}

func startNaiveRelay(b *testing.B, server netip.AddrPort) *relayProcess {
	return startNaiveRelayNamed(b, "naiverelay", server)
}

// startNaiveRelayNamed starts one of the baseline relays, which print their
// address on stdout.
func startNaiveRelayNamed(b *testing.B, name string, server netip.AddrPort) *relayProcess {
	cmd := exec.Command(binary(b, name), "-listen", "127.0.0.1:0", "-upstream", server.String())
	return &relayProcess{cmd: cmd, addr: startProcess(b, cmd, regexp.MustCompile(`^(\S+)$`)).Addr}
}

// nginxStream is Debian's stream module (libnginx-mod-stream).
const nginxStream = "/usr/lib/nginx/modules/ngx_stream_module.so"

// startNginx runs nginx's UDP stream proxy with one worker, configured as
// an operator would put it in front of a DTLS server.
func startNginx(b *testing.B, server netip.AddrPort) *relayProcess {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/nginx"); err != nil {
			b.Skip("nginx not installed (Debian: nginx, libnginx-mod-stream)")
		}
		bin = "/usr/sbin/nginx"
	}
	if _, err := os.Stat(nginxStream); err != nil {
		b.Skip("nginx's stream module not installed (Debian: libnginx-mod-stream)")
	}
	// nginx takes no port 0 and cannot report one it picked, so it gets a
	// port that was free a moment ago. Another process may take it in
	// between: nginx then fails to bind and exits, and another port is
	// tried. It is serving once it starts its worker, which it does only
	// after binding.
	dir := b.TempDir()
	ready := regexp.MustCompile(`start worker process \d+`)
	var errs []error
	for range 5 {
		addr := dtlstest.FreePort(b)
		conf := fmt.Sprintf(`load_module %s;
worker_processes 1;
pid %s/nginx.pid;
error_log stderr notice;
events { worker_connections 16384; }
stream {
    server {
        listen %v udp;
        proxy_pass %v;
        proxy_timeout 60s;
    }
}
`, nginxStream, dir, addr, server)
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
		s, err := dtlstest.StartProcess(b, cmd, func(l string) (netip.AddrPort, bool, error) {
			return addr, ready.MatchString(l), nil
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return &relayProcess{cmd: cmd, addr: addr, out: s}
	}
	b.Fatal(errors.Join(errs...))
	return nil
}

// BenchmarkRelayLiveAssociations measures what 4,096 live associations
// cost the relay: 4,096 raw clients complete the cookie exchange through an
// in-process relay and each relays one record; then the live heap, the
// goroutine stacks and the goroutines, less what the clients' sockets and
// the echo server took before (measured first), are reported in total and
// per association. (Not in the heap: the kernel's socket per association.)
func BenchmarkRelayLiveAssociations(b *testing.B) {
	const n = 4096
	for range b.N {
		server := rawEchoServer(b)
		r, err := relay.Listen("udp4", "127.0.0.1:0", server.String(), relay.WithMaxAssociations(n))
		if err != nil {
			b.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- r.Serve() }()
		front := r.Addr().(*net.UDPAddr).AddrPort()
		conns := make([]*net.UDPConn, n)
		for i := range conns {
			if conns[i], err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(front)); err != nil {
				b.Fatal(err)
			}
		}
		heap0, stack0 := liveHeapAfterGC()
		g0 := runtime.NumGoroutine()
		msg := dtlstest.Record(record.ContentTypeApplicationData, 1, 0, make([]byte, relayRecord-13))
		buf := make([]byte, 2048)
		for i, c := range conns {
			var random [32]byte
			random[0], random[1] = byte(i), byte(i>>8)
			rc := relayClient{c: c}
			for _, d := range [][]byte{dtlstest.Hello(random, nil), dtlstest.Hello(random, []byte("cookie!!")), msg} {
				if err := rc.roundTrip(d, buf); err != nil {
					b.Fatalf("client %d: %v", i, err)
				}
			}
		}
		if s := r.Stats(); s.Live != n {
			b.Fatalf("%d live associations, want %d", s.Live, n)
		}
		heap1, stack1 := liveHeapAfterGC()
		g1 := runtime.NumGoroutine()
		b.ReportMetric(float64(heap1-heap0)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(heap1-heap0)/n, "heap-B/assoc")
		b.ReportMetric(float64(stack1-stack0)/n, "stack-B/assoc")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/assoc")
		r.Close()
		if err := <-served; err != nil {
			b.Fatal(err)
		}
		for _, c := range conns {
			c.Close()
		}
	}
	b.ReportMetric(0, "ns/op")
}
