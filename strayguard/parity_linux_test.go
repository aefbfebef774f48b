//go:build linux

package strayguard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/straydtls/straydtls/internal/captured"
	"github.com/straydtls/straydtls/record"
)

// The programs' verdicts, as tcx reads their return values.
const (
	tcxNext = 0xffffffff
	tcxDrop = 2
)

var (
	testServer  = netip.MustParseAddrPort("127.0.0.1:4433")
	testClient  = netip.MustParseAddrPort("127.0.0.2:50000")
	testServer6 = netip.MustParseAddrPort("[::1]:4433")
	testClient6 = netip.MustParseAddrPort("[::1]:50000")
)

// testObjects loads the programs once per test process, attached nowhere:
// BPF_PROG_TEST_RUN runs them on packets the test builds.
var testObjects = sync.OnceValues(func() (*guardObjects, error) {
	spec, err := newSpec(config{quiet: DefaultQuietPeriod, maxPeers: 1024}, 14)
	if err != nil {
		return nil, err
	}
	objs := new(guardObjects)
	if err := load(spec, "", []uint16{testServer.Port()}, objs); err != nil {
		return nil, err
	}
	return objs, nil
})

func objects(t testing.TB) *guardObjects {
	t.Helper()
	objs, err := testObjects()
	if errors.Is(err, ErrPermission) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs as root, so this must not fail: %v", err)
		}
		t.Skipf("loading BPF programs is not allowed here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// frame wraps payload in Ethernet, IP (4 or 6, after from's address) and
// UDP headers, as tc sees a datagram from from to to.
func frame(from, to netip.AddrPort, payload []byte) []byte {
	eth := make([]byte, 14)
	var ip []byte
	if from.Addr().Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
		ip[8], ip[9] = 64, 17
		s, d := from.Addr().As4(), to.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
	} else {
		binary.BigEndian.PutUint16(eth[12:], 0x86dd)
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(8+len(payload)))
		ip[6], ip[7] = 17, 64
		s, d := from.Addr().As16(), to.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], from.Port())
	binary.BigEndian.PutUint16(udp[2:], to.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(append(append(eth, ip...), udp...), payload...)
}

// counters sums the per-CPU counters.
func counters(t testing.TB, objs *guardObjects) [numCounters]uint64 {
	t.Helper()
	var sums [numCounters]uint64
	per := make([]uint64, ebpf.MustPossibleCPU())
	for i := range sums {
		if err := objs.Counters.Lookup(uint32(i), &per); err != nil {
			t.Fatal(err)
		}
		for _, v := range per {
			sums[i] += v
		}
	}
	return sums
}

func run(t testing.TB, prog *ebpf.Program, pkt []byte) uint32 {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt})
	if err != nil {
		t.Fatal(err)
	}
	return ret
}

// outcome is what became of a datagram: passed or dropped, and the counter
// that counted it.
type outcome struct {
	drop    bool
	counter int
}

func (o outcome) String() string {
	name := [...]string{counterQuieted - int(record.NumReasons): "quieted", "ended", "expired", "hellos", "foreign"}
	c := fmt.Sprint(o.counter)
	if o.counter < int(record.NumReasons) {
		c = record.Reason(o.counter).String()
	} else if o.counter < numCounters {
		c = name[o.counter-int(record.NumReasons)]
	}
	return fmt.Sprintf("drop=%v counter=%s", o.drop, c)
}

// libraryIngress is what package strayfilter does with a datagram from a
// quiet peer (the client random it also keeps aside).
func libraryIngress(d []byte) outcome {
	r := record.Inspect(d)
	switch {
	case r.Class == record.ClassNotDTLS:
		return outcome{false, counterForeign}
	case r.OpensAssociation():
		return outcome{false, counterHellos}
	}
	return outcome{true, int(r.Reason())}
}

// endsQuiet is the library's reading of a server datagram that answers a
// ClientHello with a new handshake: a ServerHello that is not a
// HelloRetryRequest.
func endsQuiet(d []byte) bool {
	r := record.Inspect(d)
	return r.Class == record.ClassHandshake && r.Epoch == 0 && r.HasHandshakeHeader &&
		r.MsgType == record.HandshakeTypeServerHello && !r.AsksForCookie()
}

// agree runs both programs on d from a client to the server (over IPv4
// and IPv6) and fails t where the kernel and package record disagree.
func agree(t testing.TB, objs *guardObjects, d []byte) {
	t.Helper()
	// BPF_PROG_TEST_RUN builds its packet in one page, less the skb's
	// head and tail room: 3,712 bytes on 4 KiB pages, with the 62 bytes of
	// the IPv6 frame around d. Longer datagrams go through the same code,
	// the payload read with bpf_skb_load_bytes either way.
	if len(d) > 3712-62 {
		return
	}
	for _, p := range [][2]netip.AddrPort{{testClient, testServer}, {testClient6, testServer6}} {
		client, server := p[0], p[1]
		key := quietKey(client, server.Port())
		// Ingress, from a quiet client.
		if err := objs.Quiet.Put(key, guardQuietValue{Deadline: uint64(monotonicNow()) + 3600e9}); err != nil {
			t.Fatal(err)
		}
		before := counters(t, objs)
		ret := run(t, objs.StrayIngress, frame(client, server, d))
		after := counters(t, objs)
		got := outcome{ret == tcxDrop, -1}
		for i := range after {
			if after[i] != before[i] {
				got.counter = i
			}
		}
		if want := libraryIngress(d); got != want || ret != tcxDrop && ret != tcxNext {
			t.Fatalf("%v ingress of %x: kernel %v (returned %d), record %v", client.Addr(), d, got, int32(ret), want)
		}
		// Egress, to a client that is not quiet: a closing alert quiets it.
		if err := objs.Quiet.Delete(key); err != nil {
			t.Fatal(err)
		}
		if ret := run(t, objs.StrayEgress, frame(server, client, d)); ret != tcxNext {
			t.Fatalf("egress returned %d for %x: the server's datagrams always pass", int32(ret), d)
		}
		var v guardQuietValue
		quieted := objs.Quiet.Lookup(key, &v) == nil
		if want := record.CarriesClosingAlert(d); quieted != want {
			t.Fatalf("%v egress of %x: kernel quiets %v, record.CarriesClosingAlert %v", client.Addr(), d, quieted, want)
		}
		// Egress to a quiet client: a ServerHello ends its quiet period.
		if err := objs.Quiet.Put(key, guardQuietValue{Deadline: uint64(monotonicNow()) + 3600e9}); err != nil {
			t.Fatal(err)
		}
		run(t, objs.StrayEgress, frame(server, client, d))
		ended := objs.Quiet.Lookup(key, &v) != nil
		if want := !record.CarriesClosingAlert(d) && endsQuiet(d); ended != want {
			t.Fatalf("%v egress of %x: kernel ends the quiet period %v, want %v", client.Addr(), d, ended, want)
		}
		objs.Quiet.Delete(key)
	}
}

// TestKernelAgreesWithRecord holds the programs' parsing against package
// record's on every captured datagram and every input of record's fuzz
// corpus.
func TestKernelAgreesWithRecord(t *testing.T) {
	objs := objects(t)
	n := 0
	for _, f := range captured.Records(t, false) {
		agree(t, objs, f.Data)
		n++
	}
	for _, d := range captured.InspectCorpus(t) {
		agree(t, objs, d)
		n++
	}
	t.Logf("%d datagrams, each over IPv4 and IPv6", n)
}

// FuzzKernelAgreesWithRecord is TestKernelAgreesWithRecord on datagrams the
// fuzzer makes up.
func FuzzKernelAgreesWithRecord(f *testing.F) {
	for _, rf := range captured.Records(f, false) {
		f.Add(rf.Data)
	}
	for _, d := range captured.InspectCorpus(f) {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		agree(t, objects(t), d)
	})
}

// TestFragmentsAndExtensionHeadersPass: a quiet client's datagram in IP
// fragments, or behind an IPv6 extension header, passes: the program sees
// no UDP header it could trust, and judges nothing it cannot read whole.
func TestFragmentsAndExtensionHeadersPass(t *testing.T) {
	objs := objects(t)
	appData := []byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4}
	for _, client := range []netip.AddrPort{testClient, testClient6} {
		key := quietKey(client, testServer.Port())
		if err := objs.Quiet.Put(key, guardQuietValue{Deadline: uint64(monotonicNow()) + 3600e9}); err != nil {
			t.Fatal(err)
		}
		defer objs.Quiet.Delete(key)
	}
	whole := frame(testClient, testServer, appData)
	if ret := run(t, objs.StrayIngress, whole); ret != tcxDrop {
		t.Fatalf("the whole datagram from a quiet client: %d, want a drop", int32(ret))
	}
	first := append([]byte(nil), whole...)
	first[14+6] |= 0x20 // more fragments
	later := append([]byte(nil), whole...)
	later[14+7] = 0x10 // fragment offset 128 bytes
	hop := frame(testClient6, testServer6, appData)
	// A hop-by-hop options header (8 bytes of padding) before the UDP header.
	hop = append(hop[:14+40], append([]byte{17, 0, 1, 4, 0, 0, 0, 0}, hop[14+40:]...)...)
	hop[14+6] = 0
	for name, pkt := range map[string][]byte{"first fragment": first, "later fragment": later, "IPv6 hop-by-hop header": hop} {
		if ret := run(t, objs.StrayIngress, pkt); ret != tcxNext {
			t.Errorf("%s: %d, want it passed", name, int32(ret))
		}
	}
}
