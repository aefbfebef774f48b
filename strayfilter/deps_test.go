package strayfilter_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLibraryDependencies: the library packages import neither what only
// the examples may use (go-coap) nor what only the relay daemon may use
// (Prometheus's client), and record depends on the standard library alone.
func TestLibraryDependencies(t *testing.T) {
	deps := func(pkgs ...string) []string {
		t.Helper()
		args := append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)
		out, err := exec.Command("go", args...).Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		return strings.Fields(string(out))
	}
	for _, d := range deps("github.com/straydtls/straydtls/strayfilter/...", "github.com/straydtls/straydtls/conntrack/...",
		"github.com/straydtls/straydtls/adapters/...", "github.com/straydtls/straydtls/record/...",
		"github.com/straydtls/straydtls/strayguard/...") {
		if strings.Contains(d, "go-coap") || strings.Contains(d, "prometheus") {
			t.Errorf("a library package depends on %s", d)
		}
	}
	if got := deps("github.com/straydtls/straydtls/record"); len(got) != 1 {
		t.Errorf("record depends on %v; want the standard library only", got[1:])
	}
	// The lowest packages' tests use the shared fixtures, not the
	// association machinery's suites, so they build and fail on their own.
	for _, d := range deps("-test", "github.com/straydtls/straydtls/record", "github.com/straydtls/straydtls/strayfilter") {
		if strings.Contains(d, "/adapters/demux") || strings.Contains(d, "/internal/assoc") {
			t.Errorf("the record and strayfilter tests link %s", d)
		}
	}
}
