package benchmarks

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/straydtls/straydtls/strayguard"
)

// BenchmarkGuardVeth is BenchmarkRelay's load with the echo server in a
// network namespace of its own behind a veth pair, the way a server sits
// behind a network interface: each datagram crosses one tcx hook of the
// server's interface (ingress on the way in, egress on the way out),
// where on loopback it crosses both of lo's. impl=direct attaches
// nothing, impl=tcx-noop a program that only returns TCX_NEXT, and
// impl=strayguard the guard for the server's port. Needs root; the
// namespace and its veth pair are the benchmark's own and go with it.
func BenchmarkGuardVeth(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("a network namespace and a veth pair need root")
	}
	for _, mode := range []string{"raw", "dtls"} {
		for _, impl := range []string{"direct", "tcx-noop", "strayguard"} {
			b.Run("mode="+mode+"/impl="+impl, func(b *testing.B) {
				ns := newVethNS(b)
				var server netip.AddrPort
				ns.do(b, func() {
					if mode == "raw" {
						server = rawEchoServerAt(b, vethServerIP)
					} else {
						server = dtlsEchoServerAt(b, vethServerIP)
					}
					switch impl {
					case "tcx-noop":
						attachTCXNoop(b, vethServer)
					case "strayguard":
						g, err := strayguard.Attach(vethServer, []uint16{server.Port()})
						if err != nil {
							b.Fatal(err)
						}
						b.Cleanup(func() { g.Close() })
					}
				})
				runRelayLoad(b, newRelayClients(b, mode, server), nil)
			})
		}
	}
}

var vethServerIP = net.IPv4(10, 199, 0, 2)

const vethServer = "sgb1"

// vethNS is a network namespace holding one end of a veth pair
// (10.199.0.2, sgb1), the other end in this namespace (10.199.0.1, sgb0).
type vethNS struct {
	name string
}

func newVethNS(b *testing.B) *vethNS {
	ns := &vethNS{name: fmt.Sprintf("sgbench%d", os.Getpid())}
	ip := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			b.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	exec.Command("ip", "netns", "del", ns.name).Run() // a leftover of a killed run
	exec.Command("ip", "link", "del", "sgb0").Run()
	ip("netns", "add", ns.name)
	b.Cleanup(func() {
		exec.Command("ip", "link", "del", "sgb0").Run()
		exec.Command("ip", "netns", "del", ns.name).Run()
	})
	ip("link", "add", "sgb0", "type", "veth", "peer", "name", vethServer)
	ip("link", "set", vethServer, "netns", ns.name)
	ip("addr", "add", "10.199.0.1/24", "dev", "sgb0")
	ip("link", "set", "sgb0", "up")
	ip("-n", ns.name, "addr", "add", "10.199.0.2/24", "dev", vethServer)
	ip("-n", ns.name, "link", "set", vethServer, "up")
	ip("-n", ns.name, "link", "set", "lo", "up")
	return ns
}

// do runs fn on a thread inside the namespace: sockets it opens and
// programs it attaches stay there.
func (ns *vethNS) do(b *testing.B, fn func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		b.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns.name)
	if err != nil {
		b.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		b.Fatal(err)
	}
	defer unix.Setns(int(self.Fd()), unix.CLONE_NEWNET)
	fn()
}
