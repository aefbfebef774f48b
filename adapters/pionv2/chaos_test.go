package pionv2_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pion/dtls/v2"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv2"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/udprelay"
	"github.com/straydtls/straydtls/strayfilter"
)

// TestChaos runs clients that open, exchange, close and reconnect (every
// other association from the same addr:port) through a network that drops,
// duplicates and reorders, against the v2 adapter. Replay a failure with
// go test -run TestChaos ./adapters/pionv2 -args -chaos.seed=N.
func TestChaos(t *testing.T) {
	for _, seed := range dtlstest.ChaosSeeds(1, 2) {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			checkGoroutines := dtlstest.CheckGoroutines(t)
			run := &dtlstest.ChaosRun{Seed: seed, Workers: 6, Rounds: 4}
			ln, err := pionv2NewListener(t, run)
			if err != nil {
				t.Fatal(err)
			}
			served := run.Serve(ln)
			network, chaos := run.Network(t, addrPort(ln.Addr()))
			run.Dial = func(uc *net.UDPConn) (net.Conn, error) {
				cfg := dtlstest.ClientV2(t)
				cfg.ConnectContextMaker = func() (context.Context, func()) {
					return context.WithTimeout(context.Background(), 5*time.Second)
				}
				return dtls.Client(uc, cfg)
			}
			run.Clients(t, network.Addr())

			// The filter's counters against the chaos network's log: every
			// datagram it sent to the server was read and passed or dropped.
			dtlstest.WaitFor(t, "filter saw every datagram the network sent", func() bool {
				s := ln.Filter().Stats()
				return s.Passed+s.DroppedTotal() == chaos.Sent[udprelay.ToServer].Load()
			})
			run.Check(t)
			t.Logf("filter: %d passed, %d strays dropped", ln.Filter().Stats().Passed, ln.Filter().Stats().DroppedTotal())
			network.Close()
			ln.Close()
			served.Wait()
			checkGoroutines()
		})
	}
}

func pionv2NewListener(t *testing.T, run *dtlstest.ChaosRun) (*demux.Listener, error) {
	return pionv2.Listen("udp", loopback, dtlstest.ServerV2(t), demux.WithHandshakeTimeout(5*time.Second),
		demux.WithFilter(strayfilter.WithDropHook(run.OnDrop)))
}
