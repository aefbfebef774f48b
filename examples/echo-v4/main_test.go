package main

import (
	"bytes"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"testing"
)

// TestEcho runs the example's server and its client in both versions, and
// checks the server's log line per connection.
func TestEcho(t *testing.T) {
	logs := &lockedBuffer{}
	log.SetOutput(logs)
	defer log.SetOutput(os.Stderr)
	ln, err := newListener("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveOn(ln)
	}()
	for _, dtls12 := range []bool{false, true} {
		out := captureStdout(t, func() error { return runClient(ln.Addr().String(), "hello", dtls12) })
		if out != "hello\n" {
			t.Fatalf("client (DTLS 1.2: %v) printed %q", dtls12, out)
		}
	}
	ln.Close()
	<-done
	for _, want := range []string{"connected (DTLS 1.3)", "connected (DTLS 1.2)"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the server logged no %q:\n%s", want, logs.String())
		}
	}
}

func captureStdout(t *testing.T, f func() error) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	err = f()
	os.Stdout = old
	w.Close()
	out, _ := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// lockedBuffer is a log destination the connections' goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
