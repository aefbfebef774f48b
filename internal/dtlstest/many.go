package dtlstest

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
)

// RunManyClients connects many clients to a listener at once, each
// exchanging several messages: no connection may get another's data, every
// association must be created and accepted once, and after the listener and
// server stop no per-peer conn and no goroutine may be left. listen starts
// the adapter's listener; dial runs a client handshake over a socket
// connected to it (DialV2, DialV3).
func RunManyClients(t *testing.T, listen func(t *testing.T) *demux.Listener, dial func(uc *net.UDPConn) (net.Conn, error)) {
	t.Helper()
	defer CheckGoroutines(t)()
	ln := listen(t)
	srv := Serve(ln, false, nil)
	server := ln.Addr().(*net.UDPAddr)
	const clients, messages = 20, 5
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uc, err := net.DialUDP("udp", nil, server)
			if err != nil {
				errs <- err
				return
			}
			c, err := dial(uc)
			if err != nil {
				uc.Close()
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			defer c.Close()
			buf := make([]byte, 100)
			for m := range messages {
				msg := fmt.Sprintf("client %d message %d", i, m)
				if _, err := c.Write([]byte(msg)); err != nil {
					errs <- err
					return
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				if string(buf[:n]) != msg {
					errs <- fmt.Errorf("client %d got %q: connections mixed up", i, buf[:n])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := ln.Stats(); s.Created != clients || s.Accepted != clients {
		t.Errorf("stats %+v, want %d associations", s, clients)
	}
	ln.Close()
	srv.Stop()
	WaitFor(t, "all per-peer conns closed", func() bool { return ln.Stats().Conns == 0 })
}
