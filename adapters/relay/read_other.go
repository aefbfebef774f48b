//go:build !unix

package relay

import "net"

func upstreamReader(c net.Conn) func(handle func([]byte)) error { return bufferedReader(c) }
