//go:build !linux

// Command epollrelay is Linux only (epoll, recvmmsg, sendmmsg).
package main

import "log"

func main() { log.Fatal("epollrelay runs on Linux only") }
