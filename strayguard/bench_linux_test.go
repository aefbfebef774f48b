//go:build linux

package strayguard

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/straydtls/straydtls/internal/captured"
)

// BenchmarkPrograms times each program on one datagram in the kernel's
// own loop (BPF_PROG_TEST_RUN with a repeat count): what a datagram costs
// at the interface, without the stack around it. ns/op is per run.
func BenchmarkPrograms(b *testing.B) {
	objs := objects(b)
	var appData, alert []byte
	for _, f := range captured.Records(b, false) {
		switch f.Name {
		case "openssl-s_client-06-client-application-data-epoch1.hex":
			appData = f.Data
		case "openssl-s_client-08-server-alert-epoch1.hex":
			alert = f.Data
		}
	}
	other := netip.AddrPortFrom(testServer.Addr(), testServer.Port()+1)
	for _, c := range []struct {
		name  string
		prog  *ebpf.Program
		pkt   []byte
		quiet bool
	}{
		{"ingress/unguarded-port", objs.StrayIngress, frame(testClient, other, appData), false},
		{"ingress/not-quiet", objs.StrayIngress, frame(testClient, testServer, appData), false},
		{"ingress/quiet-drop", objs.StrayIngress, frame(testClient, testServer, appData), true},
		{"egress/unguarded-port", objs.StrayEgress, frame(other, testClient, appData), false},
		{"egress/application-data", objs.StrayEgress, frame(testServer, testClient, appData), false},
		{"egress/closing-alert", objs.StrayEgress, frame(testServer, testClient, alert), false},
	} {
		b.Run(c.name, func(b *testing.B) {
			key := quietKey(testClient, testServer.Port())
			objs.Quiet.Delete(key)
			if c.quiet {
				objs.Quiet.Put(key, guardQuietValue{Deadline: uint64(monotonicNow()) + uint64(time.Hour)})
			}
			defer objs.Quiet.Delete(key)
			b.ResetTimer()
			// The kernel times the runs itself; d is per run.
			_, d, err := c.prog.Benchmark(c.pkt, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(d.Nanoseconds()), "kernel-ns/run")
		})
	}
}

// BenchmarkCountQuiet counts a full quiet map of 65,536 entries, as each
// Stats call (each scrape, each stats line) does: in batches, and entry by
// entry, which kernels without batch lookups leave.
func BenchmarkCountQuiet(b *testing.B) {
	spec, err := newSpec(config{quiet: DefaultQuietPeriod, maxPeers: DefaultMaxQuietPeers}, 14)
	if err != nil {
		b.Fatal(err)
	}
	objs := new(guardObjects)
	if err := load(spec, "", []uint16{4433}, objs); err != nil {
		if errors.Is(err, ErrPermission) {
			b.Skip(err)
		}
		b.Fatal(err)
	}
	defer objs.Close()
	for i := range DefaultMaxQuietPeers {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 5000)
		if err := objs.Quiet.Put(quietKey(ap, 4433), guardQuietValue{Deadline: 1}); err != nil {
			b.Fatal(err)
		}
	}
	for _, impl := range []struct {
		name  string
		count func(*ebpf.Map) (int, error)
	}{{"batch", countEntries}, {"iterate", countByIterating}} {
		b.Run("impl="+impl.name, func(b *testing.B) {
			for b.Loop() {
				n, err := impl.count(objs.Quiet)
				if err != nil || n < DefaultMaxQuietPeers*9/10 {
					b.Fatalf("counted %d: %v", n, err)
				}
			}
		})
	}
}
