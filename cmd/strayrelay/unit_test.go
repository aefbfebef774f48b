package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit: the unit file's ExecStart flags are ones strayrelay
// accepts, and systemd-analyze verify (where it exists) finds nothing
// wrong with it, with ExecStart pointed at a binary that exists here.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("strayrelay.service")
	if err != nil {
		t.Fatal(err)
	}
	var execStart []string
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			execStart = strings.Fields(v)
		}
	}
	if len(execStart) < 2 {
		t.Fatalf("no ExecStart with flags in the unit")
	}
	if _, err := parse(execStart[1:], io.Discard); err != nil {
		t.Fatalf("the unit's flags %q: %v", execStart[1:], err)
	}
	if !bytes.Contains(unit, []byte("\nType=notify\n")) {
		t.Fatal("the unit is not Type=notify")
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	local := bytes.Replace(unit, []byte("ExecStart="+execStart[0]), []byte("ExecStart="+self), 1)
	path := filepath.Join(dir, "strayrelay.service")
	if err := os.WriteFile(path, local, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// verify reports some mistakes (an unknown Type=) only as warnings.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
