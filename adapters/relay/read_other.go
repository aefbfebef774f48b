//go:build !unix

package relay

import "net"

func upstreamReader(c net.Conn) func(*batch) error { return bufferedReader(c) }
