package quietcfg_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/quietcfg"
)

func TestConfig(t *testing.T) {
	var c quietcfg.Config
	if err := c.Set("WithQuietPeriod", conntrack.WithQuietPeriod(-time.Second)); err == nil || err.Error() != "quiet period -1s must be positive" {
		t.Errorf("a negative period: %v", err)
	}
	if err := c.Set("WithMaxQuietPeers", conntrack.WithMaxQuietPeers(7)); err != nil {
		t.Fatal(err)
	}
	tab, err := c.Table()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		tab.MarkClosed(netipPort(uint16(i + 1)))
	}
	if n := tab.Len(); n != 7 {
		t.Errorf("a table of cap 7 holds %d", n)
	}

	shared, _ := conntrack.New()
	if err := c.Share(shared); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Table(); err == nil || !strings.HasPrefix(err.Error(), "WithMaxQuietPeers conflicts with WithTable") {
		t.Errorf("a cap beside a shared table: %v", err)
	}
	var s quietcfg.Config
	if err := s.Share(nil); err == nil {
		t.Error("a nil table was taken")
	}
	s.Share(shared)
	if got, err := s.Table(); got != shared || err != nil {
		t.Errorf("Table = %p, %v; want the shared %p", got, err, shared)
	}
}

func netipPort(p uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
}
