package pionv3_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv3"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/udprelay"
	"github.com/straydtls/straydtls/strayfilter"
)

// TestChaos runs clients that open, exchange, close and reconnect (every
// other association from the same addr:port) through a network that drops,
// duplicates and reorders, against the v3 adapter. Replay a failure with
// go test -run TestChaos ./adapters/pionv3 -args -chaos.seed=N.
func TestChaos(t *testing.T) {
	for _, seed := range dtlstest.ChaosSeeds(1, 2) {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			checkGoroutines := dtlstest.CheckGoroutines(t)
			run := &dtlstest.ChaosRun{Seed: seed, Workers: 6, Rounds: 4}
			ln, err := chaosListener(t, run)
			if err != nil {
				t.Fatal(err)
			}
			served := run.Serve(ln)
			network, chaos := run.Network(t, addrPort(ln.Addr()))
			run.Dial = func(uc *net.UDPConn) (net.Conn, error) {
				c, err := dtls.Client(dtlsnet.PacketConnFromConn(uc), uc.RemoteAddr(), dtlstest.ClientV3(t))
				if err != nil {
					return nil, err
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := c.HandshakeContext(ctx); err != nil {
					c.Close()
					return nil, err
				}
				return c, nil
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

func chaosListener(t *testing.T, run *dtlstest.ChaosRun) (*demux.Listener, error) {
	return pionv3.Listen("udp", loopback, dtlstest.ServerV3(t), demux.WithHandshakeTimeout(5*time.Second),
		demux.WithFilter(strayfilter.WithDropHook(run.OnDrop)))
}
