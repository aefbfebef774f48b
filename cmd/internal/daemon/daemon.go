// Package daemon is what the project's daemons (strayrelay, strayguard)
// share around their own work: version, logs, systemd's notify protocol,
// and the HTTP listener for Prometheus metrics and health. Only binaries
// import it, so the library packages never link client_golang.
package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/straydtls/straydtls/record"
)

// Version is the module version the binary was built from, with the VCS
// revision when there is one (a build from a checkout says "(devel)").
func Version(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " (unknown version) " + runtime.Version()
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if rev != "" {
		v += " " + rev + modified
	}
	return name + " " + v + " " + runtime.Version()
}

// CheckLog checks the -log-level and -log-format flags.
func CheckLog(level, format string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	if format != "text" && format != "json" {
		return fmt.Errorf("-log-format %q: want text or json", format)
	}
	return nil
}

// Logger logs to w at level (debug, info, warn, error) in format (text, as
// logfmt, or json), both checked by CheckLog.
func Logger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// LoopbackOnly accepts addresses whose host is a loopback IP or localhost:
// counters tell who talks to the server, which is not for the network.
func LoopbackOnly(addr string) error {
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

// Notify sends state to systemd's notification socket when the daemon runs
// as a Type=notify unit (NOTIFY_SOCKET is set), and does nothing otherwise.
// The protocol is one datagram on a unix socket, so it needs no library
// (sd_notify(3)); an abstract socket name starts with '@', which the net
// package maps to the leading NUL the kernel expects.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// MetricsHandler serves /metrics (cs' metrics and the Go runtime's and
// process's), /healthz (200 while serving is true, else 503), and with
// withPprof net/http/pprof under /debug/pprof/.
func MetricsHandler(serving *atomic.Bool, withPprof bool, cs ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(cs...)
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !serving.Load() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// StraysByReason is the stats line's strays_by_reason value:
// "alert=3,application-data=1", the reasons with a count.
func StraysByReason(strays *[record.NumReasons]uint64) string {
	var b strings.Builder
	for i, v := range strays {
		if v != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%d", record.Reason(i), v)
		}
	}
	return b.String()
}
