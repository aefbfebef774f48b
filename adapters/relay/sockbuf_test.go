package relay_test

import (
	"errors"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/straydtls/straydtls/adapters/relay"
)

// TestSocketBuffers: what is asked for is granted up to the kernel's cap,
// and a cap that cuts it short is a warning that names the sysctl.
func TestSocketBuffers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads what Linux grants")
	}
	_, server := fakeServer(t)
	r := start(t, "127.0.0.1:0", server, relay.WithSocketBuffers(1<<20, 512<<10))
	if rcv, snd := r.SocketBuffers(); rcv != 1<<20 || snd != 512<<10 {
		t.Fatalf("granted %d and %d bytes, want %d and %d", rcv, snd, 1<<20, 512<<10)
	}

	data, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	rmax, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	var logs syncBuffer
	big := 2*rmax + 1<<20
	r = start(t, "127.0.0.1:0", server, relay.WithSocketBuffers(big, 1<<20),
		relay.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if rcv, _ := r.SocketBuffers(); rcv >= big {
		t.Fatalf("granted %d bytes beyond net.core.rmem_max %d", rcv, rmax)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "net.core.rmem_max") || !strings.Contains(out, "asked="+strconv.Itoa(big)) {
		t.Fatalf("no warning naming the cap:\n%s", out)
	}

	for _, bad := range [][2]int{{0, 1}, {1, -1}} {
		_, err := relay.Listen("udp", "127.0.0.1:0", server.String(), relay.WithSocketBuffers(bad[0], bad[1]))
		if !errors.Is(err, relay.ErrInvalidOption) || !strings.Contains(err.Error(), "socket buffers") {
			t.Errorf("WithSocketBuffers(%d, %d): %v", bad[0], bad[1], err)
		}
	}
}
