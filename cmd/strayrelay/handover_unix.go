//go:build unix

package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/cmd/internal/daemon"
)

// handoverEnv tells a successor started on SIGUSR2 what it inherited:
// "<listeners> <upstreams>" descriptors after the state pipe (3) and the
// ready pipe (4), in that order.
const handoverEnv = "STRAYRELAY_HANDOVER"

// Names in systemd's file descriptor store: one per descriptor, as the
// store keeps no order.
const (
	fdListen   = "strayrelay-listen-"
	fdUpstream = "strayrelay-up-"
	fdState    = "strayrelay-state"
)

// inherited is what this process was handed by the relay before it: its
// predecessor (SIGUSR2) or systemd's file descriptor store (a restart).
type inherited struct {
	h     *relay.Handover
	from  string
	ready *os.File // a predecessor's: written once this relay serves
	names []string // systemd's: removed from the store once adopted
}

// inheritedHandover returns what this process was handed, or nil.
func inheritedHandover() (*inherited, error) {
	if v, ok := os.LookupEnv(handoverEnv); ok {
		os.Unsetenv(handoverEnv)
		var nl, nu int
		if _, err := fmt.Sscanf(v, "%d %d", &nl, &nu); err != nil || nl < 1 || nu < 0 {
			return nil, fmt.Errorf("%s=%q: want \"<listeners> <upstreams>\"", handoverEnv, v)
		}
		state := os.NewFile(3, "handover-state")
		ready := os.NewFile(4, "handover-ready")
		b, err := io.ReadAll(state)
		state.Close()
		if err != nil {
			ready.Close()
			return nil, fmt.Errorf("reading the state handed over: %w", err)
		}
		h := &relay.Handover{State: b}
		for i := range nl + nu {
			f := os.NewFile(uintptr(5+i), "handover-socket")
			syscall.CloseOnExec(5 + i)
			if i < nl {
				h.Listeners = append(h.Listeners, f)
			} else {
				h.Upstreams = append(h.Upstreams, f)
			}
		}
		return &inherited{h: h, from: "predecessor", ready: ready}, nil
	}
	files, names := daemon.ListenFDs()
	if len(files) == 0 {
		return nil, nil
	}
	in := &inherited{h: &relay.Handover{}, from: "systemd file descriptor store", names: names}
	ups := map[int]*os.File{}
	for i, f := range files {
		name := names[i]
		switch {
		case strings.HasPrefix(name, fdListen):
			in.h.Listeners = append(in.h.Listeners, f)
		case strings.HasPrefix(name, fdUpstream):
			k, err := strconv.Atoi(strings.TrimPrefix(name, fdUpstream))
			if err != nil {
				f.Close()
				continue
			}
			ups[k] = f
		case name == fdState:
			b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("reading the state in systemd's store: %w", err)
			}
			in.h.State = b
		default:
			f.Close() // not ours
		}
	}
	for i := range len(ups) {
		f, ok := ups[i]
		if !ok {
			// A gap: the state's order cannot be trusted; start clean.
			in.h.State = nil
			break
		}
		in.h.Upstreams = append(in.h.Upstreams, f)
	}
	if len(in.h.Listeners) == 0 {
		in.h.Close()
		return nil, nil
	}
	return in, nil
}

// adopted tells whoever handed this process its state that it serves: the
// predecessor exits on it; systemd's store is emptied of what was taken,
// so that a later restart finds only what that relay stores.
func (in *inherited) adopted(log *slog.Logger) {
	if in.ready != nil {
		in.ready.Write([]byte{1})
		in.ready.Close()
	}
	for _, name := range in.names {
		if err := daemon.Notify("FDSTOREREMOVE=1\nFDNAME=" + name); err != nil {
			log.Warn("emptying systemd's file descriptor store failed", "err", err)
			return
		}
	}
}

// handOver freezes r and starts exe with args as its successor, handing it
// r's sockets and state, and returns once the successor serves (its pid).
// On any failure it thaws r, which serves on, and says why.
func handOver(log *slog.Logger, r *relay.Relay, exe string, args []string, stderr io.Writer) (int, error) {
	h, err := r.Freeze()
	if err != nil {
		return 0, err
	}
	defer h.Close() // the successor has its own copies, or failed
	fail := func(err error) (int, error) {
		r.Thaw()
		return 0, err
	}
	stateR, stateW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer stateR.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		stateW.Close()
		return fail(err)
	}
	defer readyR.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, stderr
	cmd.ExtraFiles = append(append([]*os.File{stateR, readyW}, h.Listeners...), h.Upstreams...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %d", handoverEnv, len(h.Listeners), len(h.Upstreams)))
	if err := cmd.Start(); err != nil {
		stateW.Close()
		readyW.Close()
		return fail(fmt.Errorf("starting the successor %s: %w", exe, err))
	}
	readyW.Close()
	go func() {
		// A pipe holds 64 KiB; the successor reads the rest as it starts.
		stateW.Write(h.State)
		stateW.Close()
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	got := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := readyR.Read(b[:])
		got <- err
	}()
	select {
	case err := <-got:
		if err == nil {
			return cmd.Process.Pid, nil
		}
		// The pipe closed without a byte: the successor exited, or closed
		// it, before serving.
		cmd.Process.Kill()
		<-exited
		return fail(fmt.Errorf("the successor (pid %d) did not take over: %w", cmd.Process.Pid, err))
	case err := <-exited:
		return fail(fmt.Errorf("the successor (pid %d) exited before it served: %v", cmd.Process.Pid, err))
	case <-time.After(successorTimeout):
		cmd.Process.Kill()
		<-exited
		return fail(fmt.Errorf("the successor (pid %d) did not serve within %v", cmd.Process.Pid, successorTimeout))
	}
}

// handoverSignal is what asks for a hand-over to a successor.
var handoverSignal os.Signal = syscall.SIGUSR2
