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
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/record"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
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
association on a fresh upstream socket.

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
	logLevel                          string
	statsInterval                     time.Duration
	expvarAddr                        string
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
	fs.StringVar(&f.upstream, "upstream", "", "the DTLS server's `host:port`; a host name is resolved once, at start (required)")
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
	fs.StringVar(&f.logLevel, "log-level", "info", "`level` of logs on stderr: debug (every association), info, warn or error")
	fs.DurationVar(&f.statsInterval, "stats-interval", time.Minute, "log a one-line counter summary this often; 0 turns it off")
	fs.StringVar(&f.expvarAddr, "expvar", "", "serve counters at http://`addr`/debug/vars; must be a loopback address such as 127.0.0.1:9090")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
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
	for name, n := range map[string]int{"max-associations": f.maxAssoc, "max-quiet-peers": f.maxQuiet, "max-unverified": f.maxUnverified} {
		if n < 1 {
			return f, fmt.Errorf("-%s %d: must be at least 1", name, n)
		}
	}
	if f.expvarAddr != "" {
		if err := loopbackOnly(f.expvarAddr); err != nil {
			return f, fmt.Errorf("-expvar %q: %w", f.expvarAddr, err)
		}
	}
	return f, nil
}

// loopbackOnly accepts addresses whose host is a loopback IP or localhost:
// the counters tell who talks to the server, which is not for the network.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return errors.New("host must be a loopback address (127.0.0.1, ::1 or localhost)")
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	if err != nil {
		return l, fmt.Errorf("-log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	f, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "strayrelay: %v\nRun strayrelay -h for usage.\n", err)
		return 2
	}
	level, err := parseLevel(f.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "strayrelay: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	r, err := relay.Listen(f.network, f.listen, f.upstream,
		relay.WithQuietPeriod(f.quiet), relay.WithMaxQuietPeers(f.maxQuiet),
		relay.WithIdleTimeout(f.idle), relay.WithHandshakeTimeout(f.handshake),
		relay.WithMaxAssociations(f.maxAssoc), relay.WithMaxUnverified(f.maxUnverified),
		relay.WithUnverifiedTimeout(f.unverifiedTimeout), relay.WithCloseLinger(f.linger),
		relay.WithCloseEcho(f.closeEcho), relay.WithLogger(log))
	if err != nil {
		fmt.Fprintf(stderr, "strayrelay: %v\n", err)
		return 1
	}

	if f.expvarAddr != "" {
		ln, err := net.Listen("tcp", f.expvarAddr)
		if err != nil {
			r.Close()
			fmt.Fprintf(stderr, "strayrelay: -expvar %q: %v\n", f.expvarAddr, err)
			return 1
		}
		expvar.Publish("strayrelay", expvar.Func(func() any { return r.Stats().Map() }))
		mux := http.NewServeMux()
		mux.Handle("/debug/vars", expvar.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("expvar counters", "url", "http://"+ln.Addr().String()+"/debug/vars")
	}

	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	log.Info("relaying", "listen", r.Addr().String(), "upstream", r.Upstream().String(),
		"quiet", f.quiet, "idle", f.idle, "max_associations", f.maxAssoc)

	var tick <-chan time.Time
	if f.statsInterval > 0 {
		t := time.NewTicker(f.statsInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			log.Info("stats", statsArgs(r.Stats())...)
		case err := <-served:
			if err != nil {
				fmt.Fprintf(stderr, "strayrelay: %v\n", err)
				return 1
			}
			return 0
		case <-ctx.Done():
			r.Close()
			<-served
			log.Info("stopped", statsArgs(r.Stats())...)
			return 0
		}
	}
}

func statsArgs(s relay.Stats) []any {
	var b strings.Builder
	for i, v := range s.Strays {
		if v != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%d", record.Reason(i), v)
		}
	}
	return []any{
		"associations", s.Associations, "opened", s.Opened,
		"server_closed", s.ServerClosed, "idle_closed", s.IdleClosed, "handshake_timeouts", s.HandshakeTimeouts,
		"refused", s.Refused, "to_server", s.ToServer, "to_client", s.ToClient,
		"strays", s.TotalStrays(), "strays_by_reason", b.String(), "dropped_unknown", s.DroppedUnknown,
		"quiet_peers", s.Table.QuietPeers,
	}
}
