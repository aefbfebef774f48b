// Command strayguard attaches package strayguard's BPF programs to a
// network interface, in front of DTLS servers on the given UDP ports, and
// keeps them there: the server's late strays are dropped in the kernel,
// with no relay, no changed port and every client's own address.
//
//	strayguard -iface eth0 -port 4433
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/straydtls/straydtls/cmd/internal/daemon"
	"github.com/straydtls/straydtls/strayguard"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

const usage = `strayguard drops, in the kernel, the late datagrams of DTLS associations a
server on this host has closed, so a server that takes the first datagram
from an address as a new connection never sees them.

It attaches two BPF programs (tcx, Linux 6.6 or later) to -iface for the
servers on -port. The server's closing alert to a client makes the client
quiet for -quiet: until then every DTLS datagram from it is dropped but an
epoch-0 ClientHello, which the server must answer; the server's ServerHello
to it ends the quiet period. Other clients and other protocols pass.

The programs and their state are pinned under -pin-dir: stopping strayguard
(SIGTERM, SIGINT) leaves them filtering, the next start adopts them (an
upgrade replaces the programs in place), and -detach removes them.
Needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (to mount bpffs).

Usage:
  strayguard -iface <name> -port <port>[,<port>...] [flags]
  strayguard -iface <name> -detach

Example, in front of an Mbed TLS, OpenSSL or GnuTLS server on port 4433:
  strayguard -iface eth0 -port 4433

Flags:
`

type flags struct {
	iface, pinDir       string
	ports               []uint16
	quiet               time.Duration
	maxQuiet            int
	detach              bool
	metricsAddr         string
	pprof, version      bool
	statsInterval       time.Duration
	logLevel, logFormat string
}

func parse(args []string, stderr io.Writer) (flags, error) {
	var f flags
	var ports string
	fs := flag.NewFlagSet("strayguard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.iface, "iface", "", "the network `interface` the server's clients reach it on, e.g. eth0, or lo (required)")
	fs.StringVar(&ports, "port", "", "the DTLS server's UDP `port`s, comma-separated, e.g. 4433 or 4433,5684 (required unless -detach)")
	fs.DurationVar(&f.quiet, "quiet", strayguard.DefaultQuietPeriod, "how long after the server's closing alert a client's datagrams other than a ClientHello are dropped")
	fs.IntVar(&f.maxQuiet, "max-quiet", strayguard.DefaultMaxQuietPeers, "cap on quiet clients; at the cap the least recently used stop being quiet early")
	fs.StringVar(&f.pinDir, "pin-dir", "", "`directory` on bpffs to pin the programs and their state in (default "+strayguard.PinDir("<iface>")+"); \"none\": do not pin, so the programs go when strayguard stops")
	fs.BoolVar(&f.detach, "detach", false, "remove the programs and state pinned for -iface, and exit")
	fs.StringVar(&f.metricsAddr, "metrics", "", "serve Prometheus metrics at http://`addr`/metrics and a health check at /healthz (200 while attached), e.g. :9091")
	fs.BoolVar(&f.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof/ on the -metrics listener, which must then be a loopback address")
	fs.DurationVar(&f.statsInterval, "stats-interval", time.Minute, "log a one-line counter summary this often; 0 turns it off")
	fs.StringVar(&f.logLevel, "log-level", "info", "`level` of logs on stderr: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "`format` of logs on stderr: text (logfmt) or json")
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
	if f.iface == "" {
		return f, errors.New("-iface is required")
	}
	switch f.pinDir {
	case "":
		f.pinDir = strayguard.PinDir(f.iface)
	case "none":
		f.pinDir = ""
	}
	if f.detach {
		if f.pinDir == "" {
			return f, errors.New("-detach needs a -pin-dir: it removes what is pinned there")
		}
		return f, nil
	}
	if ports == "" {
		return f, errors.New("-port is required")
	}
	for _, p := range strings.Split(ports, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
		if err != nil || n == 0 {
			return f, fmt.Errorf("-port %q: %q is not a port (1 to 65535)", ports, p)
		}
		f.ports = append(f.ports, uint16(n))
	}
	if f.statsInterval < 0 {
		return f, fmt.Errorf("-stats-interval %v: must be positive, or 0 for none", f.statsInterval)
	}
	if err := daemon.CheckMetrics(f.metricsAddr, f.pprof); err != nil {
		return f, err
	}
	return f, daemon.CheckLog(f.logLevel, f.logFormat)
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	f, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "strayguard: %v\nRun strayguard -h for usage.\n", err)
		return 2
	}
	if f.version {
		fmt.Fprintln(stderr, daemon.Version("strayguard"))
		return 0
	}
	log := daemon.Logger(stderr, f.logLevel, f.logFormat)
	if f.detach {
		if err := strayguard.Remove(f.pinDir); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		log.Info("detached", "iface", f.iface, "pin_dir", f.pinDir)
		return 0
	}

	// The listener is bound first, so an address in use fails the start
	// with nothing attached.
	var ln net.Listener
	if f.metricsAddr != "" {
		if ln, err = net.Listen("tcp", f.metricsAddr); err != nil {
			fmt.Fprintf(stderr, "strayguard: -metrics %q: %v\n", f.metricsAddr, err)
			return 1
		}
		defer ln.Close()
	}
	opts := []strayguard.Option{strayguard.WithQuietPeriod(f.quiet), strayguard.WithMaxQuietPeers(f.maxQuiet)}
	if f.pinDir != "" {
		opts = append(opts, strayguard.WithPinDir(f.pinDir))
	}
	g, err := strayguard.Attach(f.iface, f.ports, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	exp := newExporter(g)
	var serving atomic.Bool
	serving.Store(true)
	if ln != nil {
		srv := &http.Server{Handler: daemon.MetricsHandler(&serving, f.pprof, exp, newProgramCollector(g)), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	}
	log.Info("guarding", "iface", f.iface, "ports", fmt.Sprint(f.ports), "quiet", f.quiet, "max_quiet", f.maxQuiet,
		"pin_dir", f.pinDir, "adopted", g.Adopted(), "version", daemon.Version("strayguard"))
	if err := daemon.Notify("READY=1"); err != nil {
		log.Warn("telling systemd strayguard is ready failed", "err", err)
	}

	var tick <-chan time.Time
	if f.statsInterval > 0 {
		t := time.NewTicker(f.statsInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			log.Info("stats", exp.StatsArgs()...)
		case <-ctx.Done():
			daemon.Notify("STOPPING=1")
			stats := exp.StatsArgs()
			serving.Store(false)
			if err := g.Close(); err != nil {
				log.Warn("releasing the programs", "err", err)
			}
			if f.pinDir != "" {
				log.Info("stopped; the programs stay attached with their state, for the next start to adopt (strayguard -detach removes them)", stats...)
			} else {
				log.Info("stopped and detached", stats...)
			}
			return 0
		}
	}
}
