package relay_test

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/udprelay"
)

// TestChaos runs clients that open, exchange, close and reconnect (every
// other association from the same addr:port) through a network that drops,
// duplicates and reorders, then through the relay to a naive upstream. The
// upstream must never see a bogus connection, and the relay must account
// for every datagram the network delivered. Replay a failure with
// go test -run TestChaos ./adapters/relay -args -chaos.seed=N.
func TestChaos(t *testing.T) {
	for _, seed := range dtlstest.ChaosSeeds(1, 2) {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			checkGoroutines := dtlstest.CheckGoroutines(t)
			naive := dtlstest.NewNaiveServer(t, 5*time.Second, false)
			var debug syncBuffer
			r := start(t, "127.0.0.1:0", naive.Addr(), relay.WithLogger(slog.New(slog.NewTextHandler(&debug, &slog.HandlerOptions{Level: slog.LevelDebug}))))
			run := &dtlstest.ChaosRun{Seed: seed, Workers: 6, Rounds: 4}
			network, chaos := run.Network(t, addrOf(r))
			run.Dial = dtlstest.DialV3(t, 5*time.Second)
			run.Clients(t, network.Addr())
			dtlstest.WaitFor(t, "relay read every datagram the network sent", func() bool {
				return r.Stats().FromClients == chaos.Sent[udprelay.ToServer].Load()
			})
			if b := naive.Bogus.Load(); b != 0 {
				t.Errorf("seed %d: the upstream saw %d bogus connections:\n%s\nrelay %+v\nrelay log:\n%s",
					seed, b, strings.Join(naive.BogusLog(), "\n"), r.Stats(), debug.String())
			}
			s := r.Stats()
			t.Logf("seed %d: relay %d associations, %d strays dropped, %d unknown dropped; upstream %d conns",
				seed, s.Opened, s.DroppedStrays(), s.DroppedUnknown, naive.Conns.Load())
			network.Close()
			r.Close()
			naive.Close()
			checkGoroutines()
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the relay's goroutines to log to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
