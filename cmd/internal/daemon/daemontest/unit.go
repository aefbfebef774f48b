// Package daemontest checks what the daemons ship beside their binaries:
// their systemd units.
package daemontest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// VerifyUnit checks that the unit file's ExecStart flags are ones parse
// accepts, that the unit is Type=notify, and that systemd-analyze verify
// (where it exists) finds nothing wrong with it, with ExecStart pointed at
// a binary that exists here.
func VerifyUnit(t *testing.T, file string, parse func(args []string) error) {
	t.Helper()
	unit, err := os.ReadFile(file)
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
		t.Fatalf("no ExecStart with flags in %s", file)
	}
	if err := parse(execStart[1:]); err != nil {
		t.Fatalf("the unit's flags %q: %v", execStart[1:], err)
	}
	if !bytes.Contains(unit, []byte("\nType=notify\n")) {
		t.Fatalf("%s is not Type=notify", file)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	local := bytes.Replace(unit, []byte("ExecStart="+execStart[0]), []byte("ExecStart="+self), 1)
	path := filepath.Join(t.TempDir(), filepath.Base(file))
	if err := os.WriteFile(path, local, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// verify reports some mistakes (an unknown Type=) only as warnings.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
