package main

import (
	"net"
	"os"
)

// sdNotify sends state to systemd's notification socket when the relay runs
// as a Type=notify unit (NOTIFY_SOCKET is set), and does nothing otherwise.
// The protocol is one datagram on a unix socket, so it needs no library
// (sd_notify(3)); an abstract socket name starts with '@', which the net
// package maps to the leading NUL the kernel expects.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
