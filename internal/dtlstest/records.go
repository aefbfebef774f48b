package dtlstest

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RecordFile is one captured datagram of record/testdata/records, with the
// expectation written next to it at capture time from pion's own parser.
type RecordFile struct {
	Name   string
	Data   []byte
	Expect map[string]string
}

// recordsMemo keeps the parsed records: the model harness and its fuzz
// target load them for every execution, and reading 75 files each time
// held FuzzConnEvents to a few dozen executions per second.
var recordsMemo struct {
	sync.Mutex
	files []RecordFile
}

// Records returns every captured record in record/testdata/records, each
// with its own copy of the bytes. Fresh reads the files again (after a
// capture rewrote them).
func Records(t testing.TB, fresh bool) []RecordFile {
	t.Helper()
	recordsMemo.Lock()
	defer recordsMemo.Unlock()
	if recordsMemo.files == nil || fresh {
		recordsMemo.files = readRecords(t)
	}
	out := make([]RecordFile, len(recordsMemo.files))
	for i, rf := range recordsMemo.files {
		out[i] = rf
		out[i].Data = bytes.Clone(rf.Data)
	}
	return out
}

// RecordsDir is where the captured records are.
func RecordsDir(t testing.TB) string {
	return filepath.Join(sourceDir(t), "..", "..", "record", "testdata", "records")
}

// readRecords reads and parses every file in record/testdata/records.
func readRecords(t testing.TB) []RecordFile {
	t.Helper()
	recordsDir := RecordsDir(t)
	files, err := filepath.Glob(filepath.Join(recordsDir, "*.hex"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no records in %s (%v)", recordsDir, err)
	}
	var out []RecordFile
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rf := RecordFile{Name: filepath.Base(f), Expect: map[string]string{}}
		var hexText strings.Builder
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if rest, ok := strings.CutPrefix(line, "# expect "); ok {
				for _, kv := range strings.Fields(rest) {
					k, v, _ := strings.Cut(kv, "=")
					rf.Expect[k] = v
				}
				continue
			}
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			hexText.WriteString(line)
		}
		rf.Data, err = hex.DecodeString(hexText.String())
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(rf.Expect) == 0 {
			t.Fatalf("%s: no expect line", f)
		}
		out = append(out, rf)
	}
	return out
}
