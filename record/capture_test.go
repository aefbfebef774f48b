package record_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dtlsv2 "github.com/pion/dtls/v2"
	dtlsv3 "github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"

	"github.com/straydtls/straydtls/internal/captured"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/udprelay"
)

// The records in testdata/records are real datagrams from pion and OpenSSL
// handshakes, captured on loopback by TestCapture. Each file carries the
// expectation for its first record, written at capture time from pion's
// own parser (never from Inspect), so the classification test compares two
// independent readings of the same bytes.

var (
	capture     = flag.Bool("capture", false, "capture real DTLS datagrams into testdata/records")
	captureOnly = flag.String("capture.only", "", "with -capture, refresh only the sources whose names start with this")
)

const recordsDir = "testdata/records"

// capturedDatagram is one datagram as the relay saw it.
type capturedDatagram struct {
	dir  udprelay.Dir
	data []byte
}

type recorder struct {
	mu   sync.Mutex
	seen []capturedDatagram
}

func (r *recorder) hook(p udprelay.Packet) udprelay.Verdict {
	r.mu.Lock()
	r.seen = append(r.seen, capturedDatagram{p.Dir, append([]byte(nil), p.Data...)})
	r.mu.Unlock()
	return udprelay.Verdict{}
}

func (r *recorder) all() []capturedDatagram {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]capturedDatagram(nil), r.seen...)
}

func TestCapture(t *testing.T) {
	if !*capture {
		t.Skip("run with -capture to refresh testdata/records")
	}
	if err := os.MkdirAll(recordsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(recordsDir, *captureOnly+"*.hex"))
	for _, f := range old {
		if !strings.HasPrefix(filepath.Base(f), "synthetic-") {
			os.Remove(f)
		}
	}
	// Sources are refreshed whole: their file names number the datagrams.
	source := func(name string, cidLen int, run func() []capturedDatagram) {
		if strings.HasPrefix(name, *captureOnly) {
			save(t, name, cidLen, run())
		}
	}
	source("pion-v2", 0, func() []capturedDatagram { return captureV2(t, nil) })
	source("pion-v2-mtu60", 0, func() []capturedDatagram { return captureV2(t, func(c *dtlsv2.Config) { c.MTU = 60 }) })
	source("pion-v3-cid", 8, func() []capturedDatagram { return captureV3CID(t) })
	for _, c := range v4Captures {
		source(c.name, c.cidLen, func() []capturedDatagram { return captureV4(t, c.version, c.cidLen) })
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		source("openssl-s_client", 0, func() []capturedDatagram { return captureOpenSSL(t) })
	} else {
		t.Log("openssl not installed: no OpenSSL records captured")
	}
}

// captureThrough runs one association through a recording relay in front
// of ln: the server echoes one message and then reads until the client's
// close_notify (or 5 s); client runs the client side against the relay.
// It returns what crossed once the server is done, and the server's error.
func captureThrough(t *testing.T, ln net.Listener, client func(relay netip.AddrPort)) ([]capturedDatagram, error) {
	defer ln.Close()
	var rec recorder
	relay, err := udprelay.New(ln.Addr().(*net.UDPAddr).AddrPort(), rec.hook)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err == nil {
			_, err = c.Write(buf[:n])
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(buf) // the client's close_notify ends this read
		done <- err
	}()
	client(relay.Addr())
	err = <-done
	return rec.all(), err
}

// mustCapture is captureThrough for a client that waits for the echo: the
// server must not fail.
func mustCapture(t *testing.T, ln net.Listener, client func(relay netip.AddrPort)) []capturedDatagram {
	grams, err := captureThrough(t, ln, client)
	if err != nil {
		t.Fatal(err)
	}
	return grams
}

// captureV2 captures a pion v2 association: a handshake, one message each
// way, and a close from the client.
func captureV2(t *testing.T, tweak func(*dtlsv2.Config)) []capturedDatagram {
	ln, err := dtlsv2.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, fixture.ServerV2(t))
	if err != nil {
		t.Fatal(err)
	}
	return mustCapture(t, ln, func(relay netip.AddrPort) {
		cfg := fixture.ClientV2(t)
		if tweak != nil {
			tweak(cfg)
		}
		c, err := dtlsv2.Dial("udp", net.UDPAddrFromAddrPort(relay), cfg)
		if err != nil {
			t.Fatal(err)
		}
		echo(t, c)
		c.Close()
	})
}

// captureV3CID is the same with pion v3 and connection IDs both ways.
func captureV3CID(t *testing.T) []capturedDatagram {
	scfg := fixture.ServerV3(t)
	scfg.ConnectionIDGenerator = dtlsv3.RandomCIDGenerator(8)
	ln, err := dtlsv3.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, scfg)
	if err != nil {
		t.Fatal(err)
	}
	return mustCapture(t, ln, func(relay netip.AddrPort) {
		ccfg := fixture.ClientV3(t)
		ccfg.ConnectionIDGenerator = dtlsv3.RandomCIDGenerator(8)
		c, err := dtlsv3.Dial("udp", net.UDPAddrFromAddrPort(relay), ccfg)
		if err != nil {
			t.Fatal(err)
		}
		echo(t, c)
		c.Close()
	})
}

// captureOpenSSL is `echo hello | openssl s_client -dtls1_2` against a pion
// v2 server.
func captureOpenSSL(t *testing.T) []capturedDatagram {
	ln, err := dtlsv2.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, fixture.ServerV2(t))
	if err != nil {
		t.Fatal(err)
	}
	// s_client closes at the end of its input, maybe before the echo: the
	// server's error is no failure here.
	grams, _ := captureThrough(t, ln, func(relay netip.AddrPort) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "openssl", "s_client", "-dtls1_2", "-connect", relay.String())
		cmd.Stdin = strings.NewReader("hello\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl s_client: %v\n%s", err, out)
		}
	})
	return grams
}

type echoer interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}

func echo(t *testing.T, c echoer) {
	t.Helper()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("echo: %q, %v", buf[:n], err)
	}
}

// save writes each datagram with pion's reading of its first record.
func save(t *testing.T, source string, cidLen int, grams []capturedDatagram) {
	t.Helper()
	if len(grams) == 0 {
		t.Fatalf("%s: nothing captured", source)
	}
	for i, g := range grams {
		side := "client"
		if g.dir == udprelay.ToClient {
			side = "server"
		}
		want, desc := pionReading(g.data, cidLen)
		name := fmt.Sprintf("%s-%02d-%s-%s.hex", source, i, side, desc)
		var b bytes.Buffer
		fmt.Fprintf(&b, "# %s, datagram %d sent by the %s (%s), captured by TestCapture\n", source, i, side, g.dir)
		fmt.Fprintf(&b, "# expect %s\n", want)
		for data := g.data; len(data) > 0; {
			n := min(32, len(data))
			fmt.Fprintf(&b, "%x\n", data[:n])
			data = data[n:]
		}
		if err := os.WriteFile(filepath.Join(recordsDir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// pionReading describes the first record as pion's record-layer and
// handshake parsers read it.
func pionReading(data []byte, cidLen int) (expect, desc string) {
	if data[0]&0xe0 == 0x20 {
		return pionV4Unified(data, cidLen)
	}
	var h recordlayer.Header
	if data[0] == byte(protocol.ContentTypeConnectionID) {
		h.ConnectionID = make([]byte, cidLen)
	}
	if err := h.Unmarshal(data); err != nil {
		return "class=malformed", "malformed"
	}
	exp := expectation{epoch: int(h.Epoch)}
	switch h.ContentType {
	case protocol.ContentTypeChangeCipherSpec:
		exp.class = "change-cipher-spec"
	case protocol.ContentTypeAlert:
		exp.class = "alert"
	case protocol.ContentTypeApplicationData:
		exp.class = "application-data"
	case protocol.ContentTypeConnectionID:
		exp.class = "connection-id"
	case protocol.ContentTypeHandshake:
		exp.class = "handshake"
		if h.Epoch == 0 {
			var hh handshake.Header
			if err := hh.Unmarshal(data[recordlayer.FixedHeaderSize:]); err == nil {
				exp.msgType = int(hh.Type)
				exp.fragOff = int(hh.FragmentOffset)
				exp.opens = hh.Type == handshake.TypeClientHello
				return exp.String(), fmt.Sprintf("%s-frag%d", strings.ReplaceAll(hh.Type.String(), " ", ""), hh.FragmentOffset)
			}
		}
	default:
		exp.class = "other-content-type"
	}
	return exp.String(), fmt.Sprintf("%s-epoch%d", exp.class, h.Epoch)
}

// expectation is the annotation line of a record file.
type expectation struct {
	class   string
	epoch   int
	msgType int // -1: no handshake header
	fragOff int
	opens   bool
}

func (e expectation) String() string {
	s := fmt.Sprintf("class=%s epoch=%d opens=%v", e.class, e.epoch, e.opens)
	if e.class == "handshake" && e.epoch == 0 {
		s += fmt.Sprintf(" msgtype=%d fragoff=%d", e.msgType, e.fragOff)
	}
	return s
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// loadRecords is captured.Records, read afresh after a capture.
func loadRecords(t testing.TB) []captured.File { return captured.Records(t, *capture) }
