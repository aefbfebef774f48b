// Command strayrelay protects a DTLS server it cannot be linked into (Mbed
// TLS, OpenSSL, GnuTLS, ...) from the late datagrams of associations the
// server already closed. It listens where clients connect and relays each
// client association to the server on its own upstream socket; see package
// github.com/straydtls/straydtls/adapters/relay for what it drops and why.
//
//	strayrelay -listen :4433 -upstream 127.0.0.1:4434
package main

import (
	"context"
	"errors"
	"expvar"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/cmd/internal/daemon"
	"github.com/straydtls/straydtls/conntrack"
)

func main() {
	// SIGHUP first: until it is caught it would kill the relay.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	usr2 := make(chan os.Signal, 1)
	if handoverSignal != nil {
		signal.Notify(usr2, handoverSignal)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, hup, usr2, os.Args[1:], os.Stderr))
}

const usage = `strayrelay relays DTLS clients to one upstream server and drops the late
datagrams of associations the server has closed, so a server that takes the
first datagram from an address as a new connection never sees them.

Every client association gets its own upstream socket (its own source port).
A ClientHello opens an unverified association (-max-unverified, the oldest
evicted at the cap); the client proves its address by echoing the server's
cookie, and only then takes one of -max-associations. When the server sends
a closing alert, the association ends and the client is quiet for -quiet.
Datagrams no association can take are dropped; a ClientHello starts a new
association on a fresh upstream socket, and so does a record carrying a
connection ID from a client that is not quiet (its association was lost:
a relay killed and started again; a server that follows CIDs takes it back).

Signals: SIGINT and SIGTERM stop it gracefully; SIGHUP resolves the upstream
host name again; SIGUSR2 hands over to a new process started from the same
executable path (replace the binary first to upgrade in place): the sockets,
every association and the quiet clients carry over, no client handshakes
again, and this process exits once the new one serves (if it fails, this one
serves on). Under systemd (Type=notify) it sends READY=1 once it serves, and
with FileDescriptorStoreMax= set a stop hands over the same way through
systemd's file descriptor store to the next start (systemctl restart).

Usage:
  strayrelay -listen <addr:port> -upstream <host:port> [flags]

Example, in front of an Mbed TLS, OpenSSL or GnuTLS server on port 4434:
  strayrelay -listen :4433 -upstream 127.0.0.1:4434

Flags:
`

type flags struct {
	listen, upstream, network         string
	quiet, idle, handshake            time.Duration
	unverifiedTimeout, linger         time.Duration
	closeEcho                         bool
	maxAssoc, maxQuiet, maxUnverified int
	rcvbuf, sndbuf                    int
	readers                           int
	logLevel, logFormat               string
	statsInterval                     time.Duration
	expvarAddr, metricsAddr           string
	pprof, version                    bool
}

func parse(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("strayrelay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.listen, "listen", "", "`address` clients send to, e.g. :4433 or [::1]:4433 (required)")
	fs.StringVar(&f.upstream, "upstream", "", "the DTLS server's `host:port`; a host name is resolved at start and again on SIGHUP, for new associations (required)")
	fs.StringVar(&f.network, "network", "udp", "`udp`, udp4 or udp6: restricts both addresses to one family")
	fs.DurationVar(&f.quiet, "quiet", conntrack.DefaultQuietPeriod, "how long after the server closed a client's association its late datagrams count as strays and earn it the server's closing alert again (-close-echo)")
	fs.BoolVar(&f.closeEcho, "close-echo", true, "send a client that keeps sending after the server closed its association the server's closing alert again (on its 1st, 2nd, 4th... late datagram)")
	fs.DurationVar(&f.idle, "idle", relay.DefaultIdleTimeout, "end an association after this long with no datagram either way; set it above your clients' keepalive interval")
	fs.DurationVar(&f.handshake, "handshake-timeout", relay.DefaultHandshakeTimeout, "end an association whose handshake has not completed this long after the first ClientHello")
	fs.IntVar(&f.maxAssoc, "max-associations", relay.DefaultMaxAssociations, "cap on associations whose client proved its address (one upstream socket each); at the cap a closing one is reclaimed, else the client's cookie echo is refused and counted")
	fs.IntVar(&f.maxUnverified, "max-unverified", relay.DefaultMaxUnverified, "cap on associations whose client has not yet proved its address (what a forged ClientHello opens); at the cap the oldest is evicted")
	fs.DurationVar(&f.unverifiedTimeout, "unverified-timeout", relay.DefaultUnverifiedTimeout, "end an association whose client has not proved its address this long after its first ClientHello")
	fs.DurationVar(&f.linger, "close-linger", relay.DefaultCloseLinger, "after a client's closing alert, end its association once nothing crossed for this long (for servers that do not answer it); 0: a client's alert ends nothing")
	fs.IntVar(&f.maxQuiet, "max-quiet-peers", conntrack.DefaultMaxQuietPeers, "cap on clients in their quiet period; at the cap the oldest stops being quiet early")
	fs.IntVar(&f.rcvbuf, "rcvbuf", relay.DefaultSocketBuffer, "receive buffer in `bytes` asked for on the listening socket; a warning says when the kernel grants less (raise net.core.rmem_max)")
	fs.IntVar(&f.sndbuf, "sndbuf", relay.DefaultSocketBuffer, "send buffer in `bytes` asked for on the listening socket; a warning says when the kernel grants less (raise net.core.wmem_max)")
	fs.IntVar(&f.readers, "readers", 1, "`n` sockets on the listening address (SO_REUSEPORT, Linux), each read by its own goroutine; the kernel spreads clients over them")
	fs.StringVar(&f.logLevel, "log-level", "info", "`level` of logs on stderr: debug (every association), info, warn or error")
	fs.DurationVar(&f.statsInterval, "stats-interval", time.Minute, "log a one-line counter summary this often; 0 turns it off")
	fs.StringVar(&f.logFormat, "log-format", "text", "`format` of logs on stderr: text (logfmt) or json")
	fs.StringVar(&f.expvarAddr, "expvar", "", "serve counters at http://`addr`/debug/vars; must be a loopback address such as 127.0.0.1:9090")
	fs.StringVar(&f.metricsAddr, "metrics", "", "serve Prometheus metrics at http://`addr`/metrics and a health check at /healthz (200 while relaying), e.g. :9090")
	fs.BoolVar(&f.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof/ on the -metrics listener, which must then be a loopback address")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.version {
		return f, nil
	}
	if f.listen == "" || f.upstream == "" {
		return f, errors.New("both -listen and -upstream are required")
	}
	for name, d := range map[string]time.Duration{"quiet": f.quiet, "idle": f.idle, "handshake-timeout": f.handshake, "unverified-timeout": f.unverifiedTimeout} {
		if d <= 0 {
			return f, fmt.Errorf("-%s %v: must be positive", name, d)
		}
	}
	if f.linger < 0 {
		return f, fmt.Errorf("-close-linger %v: must not be negative", f.linger)
	}
	if f.statsInterval < 0 {
		return f, fmt.Errorf("-stats-interval %v: must be positive, or 0 for none", f.statsInterval)
	}
	for name, n := range map[string]int{"max-associations": f.maxAssoc, "max-quiet-peers": f.maxQuiet, "max-unverified": f.maxUnverified, "rcvbuf": f.rcvbuf, "sndbuf": f.sndbuf, "readers": f.readers} {
		if n < 1 {
			return f, fmt.Errorf("-%s %d: must be at least 1", name, n)
		}
	}
	if f.expvarAddr != "" {
		if err := daemon.LoopbackOnly(f.expvarAddr); err != nil {
			return f, fmt.Errorf("-expvar %q: %w", f.expvarAddr, err)
		}
	}
	if err := daemon.CheckMetrics(f.metricsAddr, f.pprof); err != nil {
		return f, err
	}
	if err := daemon.CheckLog(f.logLevel, f.logFormat); err != nil {
		return f, err
	}
	return f, nil
}

// run is main without the process: it returns the exit code. hup delivers
// SIGHUP: the upstream host name is resolved again; usr2 SIGUSR2: a
// hand-over to a successor.
func run(ctx context.Context, hup, usr2 <-chan os.Signal, args []string, stderr io.Writer) int {
	f, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "strayrelay: %v\nRun strayrelay -h for usage.\n", err)
		return 2
	}
	if f.version {
		fmt.Fprintln(stderr, daemon.Version("strayrelay"))
		return 0
	}
	log := daemon.Logger(stderr, f.logLevel, f.logFormat)
	// The path this process was started from, now: replacing the binary
	// there and sending SIGUSR2 starts the new one.
	exe, exeErr := os.Executable()

	in, err := inheritedHandover()
	if err != nil {
		fmt.Fprintf(stderr, "strayrelay: %v\n", err)
		return 1
	}
	r, err := newRelay(f, in, log)
	if err != nil {
		fmt.Fprintf(stderr, "strayrelay: %v\n", err)
		return 1
	}
	exp := newExporter(r)

	var serving atomic.Bool
	// A predecessor holds the HTTP ports until this relay serves and it
	// exits: bind them after, retrying. Otherwise they are bound before
	// the relay serves, so an address in use fails the start, not a
	// scrape later.
	fromPredecessor := in != nil && in.ready != nil
	var web httpServers
	defer web.close()
	if !fromPredecessor {
		if err := web.listen(f, r, &serving, exp, log, 0); err != nil {
			r.Close()
			fmt.Fprintf(stderr, "strayrelay: %v\n", err)
			return 1
		}
	}

	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	serving.Store(true)
	if in != nil {
		in.adopted(log)
		log.Info("carried on from a hand-over", "from", in.from)
	}
	if fromPredecessor {
		go func() {
			if err := web.listen(f, r, &serving, exp, log, successorTimeout); err != nil {
				log.Error("the HTTP listeners could not be bound after the hand-over", "err", err)
			}
		}()
	}
	log.Info("relaying", "listen", r.Addr().String(), "upstream", r.Upstream().String(),
		"quiet", f.quiet, "idle", f.idle, "max_associations", f.maxAssoc, "version", daemon.Version("strayrelay"))
	if err := daemon.Notify("READY=1"); err != nil {
		log.Warn("telling systemd the relay is ready failed", "err", err)
	}

	var tick <-chan time.Time
	if f.statsInterval > 0 {
		t := time.NewTicker(f.statsInterval)
		defer t.Stop()
		tick = t.C
	}
	stop := func(msg string) int {
		serving.Store(false)
		r.Close()
		<-served
		log.Info(msg, exp.StatsArgs()...)
		return 0
	}
	for {
		select {
		case <-tick:
			log.Info("stats", exp.StatsArgs()...)
		case <-hup:
			reresolve(log, r, f.network, f.upstream)
		case <-usr2:
			if exeErr != nil {
				log.Error("no hand-over: the executable's path is unknown; serving on", "err", exeErr)
				continue
			}
			log.Info("handing over to a new process", "executable", exe)
			web.close() // its ports are the successor's to bind
			began := time.Now()
			pid, err := handOver(log, r, exe, args, stderr)
			if err != nil {
				log.Error("the hand-over failed; serving on", "err", err)
				if err := web.listen(f, r, &serving, exp, log, 0); err != nil {
					log.Error("the HTTP listeners could not be bound again", "err", err)
				}
				continue
			}
			// systemd follows the successor (NotifyAccess=main lets the
			// main process name it).
			if err := daemon.Notify(fmt.Sprintf("MAINPID=%d", pid)); err != nil {
				log.Warn("telling systemd the new main process failed", "err", err)
			}
			log.Info("handed over", "successor_pid", pid, "took", time.Since(began).Round(time.Microsecond))
			return stop("stopped")
		case err := <-served:
			serving.Store(false)
			if err != nil {
				fmt.Fprintf(stderr, "strayrelay: %v\n", err)
				return 1
			}
			return 0
		case <-ctx.Done():
			daemon.Notify("STOPPING=1")
			if storeInSystemd(log, r) {
				return stop("stopped; the next start carries on")
			}
			return stop("stopped")
		}
	}
}

// newRelay makes the relay: on what this process inherited, or listening
// afresh.
func newRelay(f flags, in *inherited, log *slog.Logger) (*relay.Relay, error) {
	opts := []relay.Option{
		relay.WithQuietPeriod(f.quiet), relay.WithMaxQuietPeers(f.maxQuiet),
		relay.WithIdleTimeout(f.idle), relay.WithHandshakeTimeout(f.handshake),
		relay.WithMaxAssociations(f.maxAssoc), relay.WithMaxUnverified(f.maxUnverified),
		relay.WithUnverifiedTimeout(f.unverifiedTimeout), relay.WithCloseLinger(f.linger),
		relay.WithCloseEcho(f.closeEcho), relay.WithSocketBuffers(f.rcvbuf, f.sndbuf), relay.WithLogger(log),
	}
	if in == nil {
		return relay.Listen(f.network, f.listen, f.upstream, append(opts, relay.WithReaders(f.readers))...)
	}
	up, err := net.ResolveUDPAddr(f.network, f.upstream)
	if err != nil {
		in.h.Close()
		return nil, fmt.Errorf("upstream %q: %w", f.upstream, err)
	}
	ap := up.AddrPort()
	return relay.Adopt(in.h, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), opts...)
}

// httpServers are the -expvar and -metrics listeners.
type httpServers struct {
	mu   sync.Mutex
	srvs []*http.Server
}

// listen binds the HTTP listeners the flags ask for; with retry, an
// address in use is tried again until retry has passed (a predecessor
// letting go of it).
func (w *httpServers) listen(f flags, r *relay.Relay, serving *atomic.Bool, exp *daemon.Exporter, log *slog.Logger, retry time.Duration) error {
	for _, l := range []struct {
		flag, addr, path string
		handler          func() http.Handler
	}{
		{"-expvar", f.expvarAddr, "/debug/vars", func() http.Handler {
			publishOnce.Do(func() {
				expvar.Publish("strayrelay", expvar.Func(func() any { return r.Stats().Map() }))
			})
			mux := http.NewServeMux()
			mux.Handle("/debug/vars", expvar.Handler())
			return mux
		}},
		{"-metrics", f.metricsAddr, "/metrics", func() http.Handler { return daemon.MetricsHandler(serving, f.pprof, exp) }},
	} {
		if l.addr == "" {
			continue
		}
		deadline := time.Now().Add(retry)
		ln, err := net.Listen("tcp", l.addr)
		for err != nil && errors.Is(err, syscall.EADDRINUSE) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			ln, err = net.Listen("tcp", l.addr)
		}
		if err != nil {
			w.close()
			return fmt.Errorf("%s %q: %w", l.flag, l.addr, err)
		}
		srv := &http.Server{Handler: l.handler(), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		w.mu.Lock()
		w.srvs = append(w.srvs, srv)
		w.mu.Unlock()
		log.Info("serving "+strings.TrimPrefix(l.flag, "-"), "url", "http://"+ln.Addr().String()+l.path)
	}
	return nil
}

func (w *httpServers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, srv := range w.srvs {
		srv.Close()
	}
	w.srvs = nil
}

// successorTimeout bounds how long a relay waits for its successor to
// serve before it serves on itself, and how long a successor tries to bind
// the HTTP ports its predecessor holds.
const successorTimeout = 10 * time.Second

// publishOnce: expvar names are process-wide, and a relay that binds its
// listeners again after a failed hand-over publishes nothing twice.
var publishOnce sync.Once

// reresolve resolves the upstream host name again (SIGHUP) and points new
// associations at what it resolves to; live ones stay where they are. A
// failure keeps the address the relay has.
func reresolve(log *slog.Logger, r *relay.Relay, network, upstream string) {
	old := r.Upstream()
	ua, err := net.ResolveUDPAddr(network, upstream)
	if err == nil {
		err = r.SetUpstream(ua.AddrPort())
	}
	if err != nil {
		log.Warn("resolving the upstream again failed; keeping the old address", "upstream", upstream, "addr", old.String(), "err", err)
		return
	}
	now := r.Upstream()
	log.Info("upstream resolved", "upstream", upstream, "addr", now.String(), "was", old.String(), "changed", now != old)
}
