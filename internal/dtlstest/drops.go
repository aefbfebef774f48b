package dtlstest

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// SocketDrops returns how many datagrams the kernel dropped at the UDP
// socket bound to local (its receive queue was full), from /proc/net/udp
// and udp6: datagrams that reached the host but that no reader of the
// socket could see. ok is false where /proc has no such socket.
func SocketDrops(local netip.AddrPort) (drops uint64, ok bool) {
	port := fmt.Sprintf(":%04X", local.Port())
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
			if len(fields) < 13 || !strings.HasSuffix(fields[1], port) {
				continue
			}
			if n, err := strconv.ParseUint(fields[12], 10, 64); err == nil {
				drops += n
				ok = true
			}
		}
		fh.Close()
	}
	return drops, ok
}
