// Package captured reads the real DTLS datagrams in record/testdata/records
// (pion v2, v3 and v4, openssl s_client, and a few synthetic ones), each
// with what pion's own parser read of its first record at capture time,
// for any package's tests. It depends only on the standard library, so
// the tests of the lowest packages can use it.
package captured

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// File is one captured datagram of record/testdata/records, with the
// expectation written next to it at capture time from pion's own parser.
type File struct {
	Name   string
	Data   []byte
	Expect map[string]string
}

// recordsMemo keeps the parsed records: the model harness and its fuzz
// target load them for every execution, and reading 75 files each time
// held FuzzConnEvents to a few dozen executions per second.
var recordsMemo struct {
	sync.Mutex
	files []File
}

// Records returns every captured record in record/testdata/records, each
// with its own copy of the bytes. Fresh reads the files again (after a
// capture rewrote them).
func Records(t testing.TB, fresh bool) []File {
	t.Helper()
	recordsMemo.Lock()
	defer recordsMemo.Unlock()
	if recordsMemo.files == nil || fresh {
		recordsMemo.files = readRecords(t)
	}
	out := make([]File, len(recordsMemo.files))
	for i, rf := range recordsMemo.files {
		out[i] = rf
		out[i].Data = bytes.Clone(rf.Data)
	}
	return out
}

// Dir is where the captured records are.
func Dir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate internal/captured")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "record", "testdata", "records")
}

// readRecords reads and parses every file in record/testdata/records.
func readRecords(t testing.TB) []File {
	t.Helper()
	recordsDir := Dir(t)
	files, err := filepath.Glob(filepath.Join(recordsDir, "*.hex"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no records in %s (%v)", recordsDir, err)
	}
	var out []File
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rf := File{Name: filepath.Base(f), Expect: map[string]string{}}
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

// InspectCorpus returns the inputs of record's FuzzInspect corpus
// (record/testdata/fuzz/FuzzInspect), the datagrams the fuzzer kept for
// reaching new code in the record parser, for other parsers of the same
// bytes to be held against it.
func InspectCorpus(t testing.TB) [][]byte {
	t.Helper()
	dir := filepath.Join(filepath.Dir(Dir(t)), "fuzz", "FuzzInspect")
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in %s (%v)", dir, err)
	}
	var out [][]byte
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// "go test fuzz v1" and one line: []byte("...").
		_, lit, _ := strings.Cut(strings.TrimSpace(string(raw)), "\n")
		lit, ok := strings.CutPrefix(lit, "[]byte(")
		lit, ok2 := strings.CutSuffix(lit, ")")
		s, err := strconv.Unquote(lit)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: not a []byte corpus entry: %v", f, err)
		}
		out = append(out, []byte(s))
	}
	return out
}

// Named returns a copy of the captured record called name (a file name in
// record/testdata/records), failing the test when there is none.
func Named(t testing.TB, name string) []byte {
	t.Helper()
	for _, rf := range Records(t, false) {
		if rf.Name == name {
			return rf.Data
		}
	}
	t.Fatalf("no record %s in %s", name, Dir(t))
	return nil
}
