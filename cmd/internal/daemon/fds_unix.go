//go:build unix

package daemon

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// NotifyWithFDs sends state with descriptors attached (SCM_RIGHTS), as
// sd_pid_notify_with_fds(3) does: how a service puts sockets into
// systemd's file descriptor store ("FDSTORE=1\nFDNAME=..."). It does
// nothing without NOTIFY_SOCKET.
func NotifyWithFDs(state string, fds []int) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	// A raw socket: the net package sends no control message on a
	// connected datagram socket.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer syscall.Close(fd)
	syscall.CloseOnExec(fd)
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract name
	}
	return os.NewSyscallError("sendmsg", syscall.Sendmsg(fd, []byte(state), syscall.UnixRights(fds...), &syscall.SockaddrUnix{Name: path}, 0))
}

// ListenFDs returns the descriptors systemd passed (sd_listen_fds(3):
// LISTEN_FDS from descriptor 3 on, for this process by LISTEN_PID) with
// their names (LISTEN_FDNAMES), and unsets the variables so that no child
// takes them for its own. Without them it returns nothing.
func ListenFDs() ([]*os.File, []string) {
	defer func() {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	}()
	if pid, err := strconv.Atoi(os.Getenv("LISTEN_PID")); err != nil || pid != os.Getpid() {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil, nil
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	files := make([]*os.File, n)
	for i := range files {
		fd := 3 + i
		syscall.CloseOnExec(fd)
		name := "unknown"
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		files[i] = os.NewFile(uintptr(fd), name)
	}
	return files, names
}
