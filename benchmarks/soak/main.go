// Command soak runs the v2 adapter and the relay (in front of a v3 adapter
// server) under continuous load from many clients that connect, exchange a
// message, are closed by the server and reconnect, half of them from the
// same addr:port. Every -every it prints throughput, drops by reason, heap
// and goroutines. It is not part of CI; RELIABILITY.md has its last report.
//
//	go run ./benchmarks/soak -duration 10m
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dtlsv2 "github.com/pion/dtls/v2"
	"github.com/pion/dtls/v2/pkg/crypto/selfsign"
	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv2"
	"github.com/straydtls/straydtls/adapters/pionv3"
	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/record"
)

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long to run")
	every := flag.Duration("every", time.Minute, "report interval")
	clients := flag.Int("clients", 32, "concurrent clients per target")
	targets := flag.String("targets", "v2,relay", "comma-separated targets to load: v2, relay")
	debugLog := flag.String("debuglog", "", "write the listeners' and the relay's debug log (JSON) to this file")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	loadV2, loadRelay := strings.Contains(*targets, "v2"), strings.Contains(*targets, "relay")
	var dlog *slog.Logger
	if *debugLog != "" {
		f, err := os.Create(*debugLog)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		dlog = slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	baseline := runtime.NumGoroutine()
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		log.Fatal(err)
	}
	loop := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	v2ln, err := pionv2.Listen("udp", loop, &dtlsv2.Config{Certificates: []tls.Certificate{cert},
		ExtendedMasterSecret: dtlsv2.RequireExtendedMasterSecret}, demux.WithHandshakeTimeout(10*time.Second),
		demux.WithLogger(dlog))
	if err != nil {
		log.Fatal(err)
	}
	v3ln, err := pionv3.Listen("udp", loop, &dtlsv3.Config{Certificates: []tls.Certificate{cert},
		ExtendedMasterSecret: dtlsv3.RequireExtendedMasterSecret}, demux.WithLogger(dlog))
	if err != nil {
		log.Fatal(err)
	}
	var ropts []relay.Option
	if dlog != nil {
		ropts = append(ropts, relay.WithLogger(dlog))
	}
	rl, err := relay.Listen("udp", "127.0.0.1:0", v3ln.Addr().String(), ropts...)
	if err != nil {
		log.Fatal(err)
	}
	go rl.Serve()
	// Each connection echoes one message and closes, so every association
	// ends on the server's side and leaves strays behind.
	srvV2 := dtlstest.Serve(v2ln, true, nil)
	srvV3 := dtlstest.Serve(v3ln, true, nil)

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	// failed counts handshakes and echoes that failed; portTaken counts
	// rounds that could not rebind the previous round's port because
	// another client's fresh socket had taken it meanwhile (not a DTLS
	// failure: the round starts from a new port instead).
	var okV2, okRelay, failed, portTaken atomic.Int64
	var wg sync.WaitGroup
	for w := range *clients {
		if loadV2 {
			wg.Add(1)
			go func() { defer wg.Done(); clientLoop(ctx, "v2", w, v2ln.Addr(), cert, &okV2, &failed, &portTaken) }()
		}
		if loadRelay {
			wg.Add(1)
			go func() { defer wg.Done(); clientLoop(ctx, "relay", w, rl.Addr(), cert, &okRelay, &failed, &portTaken) }()
		}
	}

	start := time.Now()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	var lastV2, lastRelay int64
	report := func() {
		// The live heap, not what the collector has yet to reclaim: a leak
		// shows as a rising floor.
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		el := time.Since(start).Truncate(time.Second)
		v2, r := okV2.Load(), okRelay.Load()
		fs := v2ln.Stats().Filter
		rs := rl.Stats()
		fmt.Printf("t=%v v2=%d (%.0f/s) relay=%d (%.0f/s) failed=%d port-taken=%d | v2 drops %s | relay strays %s unknown=%d assoc=%d | live heap=%.1fMiB goroutines=%d\n",
			el, v2, float64(v2-lastV2)/every.Seconds(), r, float64(r-lastRelay)/every.Seconds(), failed.Load(), portTaken.Load(),
			reasons(fs.Strays), reasons(rs.Strays), rs.DroppedUnknown, rs.Associations,
			float64(m.HeapAlloc)/(1<<20), runtime.NumGoroutine())
		lastV2, lastRelay = v2, r
	}
	for {
		select {
		case <-tick.C:
			report()
		case <-ctx.Done():
			wg.Wait()
			report()
			fmt.Printf("v2 adapter: %+v\nv3 adapter (behind the relay): %+v\nrelay: %+v\n", v2ln.Stats(), v3ln.Stats(), rl.Stats())
			v2ln.Close()
			rl.Close()
			v3ln.Close()
			srvV2.Stop()
			srvV3.Stop()
			// Every client has stopped and every listener closed: wait
			// (up to 30 s) for the goroutines to fall back to what ran
			// before the servers started, and say how long that took.
			shut := time.Now()
			for runtime.NumGoroutine() > baseline && time.Since(shut) < 30*time.Second {
				time.Sleep(100 * time.Millisecond)
			}
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Printf("after shutdown: live heap=%.1fMiB goroutines=%d (%d before start) after %v\n",
				float64(m.HeapAlloc)/(1<<20), runtime.NumGoroutine(), baseline, time.Since(shut).Truncate(time.Millisecond))
			os.Exit(0)
		}
	}
}

func reasons(d [record.NumReasons]uint64) string {
	s := ""
	for i, n := range d {
		if n != 0 {
			s += fmt.Sprintf("%v=%d ", record.Reason(i), n)
		}
	}
	if s == "" {
		return "none "
	}
	return s
}

func clientLoop(ctx context.Context, target string, w int, addr net.Addr, cert tls.Certificate, ok, failed, portTaken *atomic.Int64) {
	var local *net.UDPAddr
	for i := 0; ctx.Err() == nil; i++ {
		if i%2 == 0 {
			local = nil
		}
		uc, err := net.ListenUDP("udp", local)
		if err != nil {
			if local == nil {
				log.Fatalf("%s: client %d: %v", target, w, err)
			}
			portTaken.Add(1)
			local = nil
			continue
		}
		local = uc.LocalAddr().(*net.UDPAddr)
		c, err := dtlsv3.Client(uc, addr, &dtlsv3.Config{Certificates: []tls.Certificate{cert},
			InsecureSkipVerify: true, ExtendedMasterSecret: dtlsv3.RequireExtendedMasterSecret})
		if err == nil {
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = c.HandshakeContext(hctx)
			cancel()
		}
		if err == nil {
			msg := fmt.Sprintf("w%d i%d", w, i)
			c.Write([]byte(msg))
			buf := make([]byte, 2048)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var n int
			n, err = c.Read(buf)
			if err == nil && string(buf[:n]) != msg {
				err = fmt.Errorf("echo %q", buf[:n])
			}
		}
		if err == nil {
			ok.Add(1)
		} else if ctx.Err() == nil {
			if n := failed.Add(1); n <= 10 {
				log.Printf("%s: client %d round %d from %v: %v", target, w, i, local, err)
			}
		}
		if c != nil {
			c.Close()
		}
		uc.Close()
	}
}
