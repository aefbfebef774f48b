package dtlstest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/udprelay"
)

// trace keeps what crossed a test's relay, and the test's own steps, to
// print if the test fails: a failure that takes load to reproduce should
// say what the network carried when it did.
type trace struct {
	mu    sync.Mutex
	start time.Time
	lines []string
}

// traceLines bounds a trace: a test's datagrams number in the tens.
const traceLines = 200

func newTrace(t testing.TB) *trace {
	tr := &trace{start: time.Now()}
	t.Cleanup(func() {
		if t.Failed() {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			t.Logf("what crossed the relay:\n%s", strings.Join(tr.lines, "\n"))
		}
	})
	return tr
}

func (tr *trace) log(line string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.lines) < traceLines {
		tr.lines = append(tr.lines, fmt.Sprintf("%9.3fms %s", float64(time.Since(tr.start).Microseconds())/1e3, line))
	}
}

func (tr *trace) add(p udprelay.Packet, dropped bool) {
	r := record.Inspect(p.Data)
	what := r.Class.String()
	if r.Class == record.ClassHandshake && r.HasHandshakeHeader {
		what = fmt.Sprintf("%s(type %d, seq %d)", what, r.MsgType, r.MessageSeq)
	}
	verdict := ""
	if dropped {
		verdict = " DROPPED"
	}
	tr.log(fmt.Sprintf("%s %s epoch %d, %d bytes%s", p.Dir, what, r.Epoch, len(p.Data), verdict))
}

func (tr *trace) mark(step string) { tr.log("-- " + step) }
