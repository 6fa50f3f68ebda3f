package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/benchkit"
	"github.com/qcluster/qcluster/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-systems", "qcluster,zookeeper"},
		{"-systems", ","},
		{"-clients", "0"},
		{"-clients", "x"},
		{"-clients", "", "-read-clients", "0"},
		{"-duration", "0s"},
		{"-value-size", "-1"},
		{"extra"},
	} {
		if err := run(t.Context(), args, io.Discard, io.Discard); !errors.Is(err, benchkit.ErrUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-duration", "2s", "-systems", "etcd, qcluster,etcd"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.clients, []int{1, 4}) || o.readClients != 4 || o.duration != 2*time.Second || o.warmup != 200*time.Millisecond {
		t.Errorf("-quick -duration 2s: %+v", o)
	}
	if !slices.Equal(o.systems, []string{"qcluster", "etcd"}) {
		t.Errorf("systems %q, want the table's order, once each", o.systems)
	}
	o, err = parseFlags(nil, io.Discard)
	if err != nil || !slices.Equal(o.clients, []int{1, 16, 64}) || o.readClients != 16 || o.duration != 5*time.Second || o.valueSize != 100 {
		t.Errorf("defaults: %+v %v", o, err)
	}
}

func TestReport(t *testing.T) {
	q := &system{key: sysQCluster, label: "QCluster", settings: "s", results: map[load]result{
		{"put", 1}: {P50us: 1500, P99us: 3000, OpsPerSec: 600}, {"get", 16}: {P50us: 200, P99us: 900, OpsPerSec: 40000}}}
	e := &system{key: sysEtcd, label: "etcd 3.4", settings: "s", results: map[load]result{
		{"put", 1}: {P50us: 1000, P99us: 2000, OpsPerSec: 900}, {"get", 16}: {P50us: 400, P99us: 1000, OpsPerSec: 20000}}}
	var b bytes.Buffer
	printReport(&b, options{duration: time.Second, valueSize: 100}, []*system{q, e}, []load{{"put", 1}, {"get", 16}}, "1.0", "2.0")
	for _, want := range []string{
		"| put, 1 client | 1.50 / 3.00 | 600 | 1.00 / 2.00 | 900 | 1.50 | 0.67 |",
		"| linearizable get, 16 clients | 0.20 / 0.90 | 40000 | 0.40 / 1.00 | 20000 | 0.50 | 2.00 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no row %q in:\n%s", want, b.String())
		}
	}
}

// TestRunQuick runs the benchmark end to end with small numbers: QCluster
// agents built here, and etcd when it is installed (the test does not
// install it). It asserts that every system got its figures, never what
// they are.
func TestRunQuick(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	if testing.Short() {
		t.Skip("builds the agent and etcd's client: not with -short")
	}
	systems := "qcluster"
	if _, err := exec.LookPath("etcd"); err == nil {
		systems += ",etcd"
	} else {
		t.Log("etcd is not installed: its column is left out")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"-quick", "-systems", systems}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("run %q: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errOut.String())
	}
	cells := `\d+\.\d\d / \d+\.\d\d \| \d+ \|`
	n := strings.Count(systems, ",") + 1
	for _, row := range []string{`put, 1 client`, `put, 4 clients`, `linearizable get, 4 clients`} {
		re := `(?m)^\| ` + row + ` \|` + strings.Repeat(" "+cells, n)
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("no row of figures for %s:\n%s", row, out.String())
		}
	}
}

// TestDocsCommands: every "go run ./bench/kv ..." in the README and in
// this package's doc parses with the benchmark's flags.
func TestDocsCommands(t *testing.T) {
	cmd := regexp.MustCompile("go run \\./bench/kv((?:[ \t]+[^\\s#|&;`]+)*)")
	seen := 0
	for _, file := range []string{"../../README.md", "main.go"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cmd.FindAllStringSubmatch(string(b), -1) {
			seen++
			args := strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(m[1]))
			if _, err := parseFlags(args, io.Discard); err != nil {
				t.Errorf("%s: %q: %v", file, m[0], err)
			}
		}
	}
	if seen < 2 {
		t.Errorf("found only %d 'go run ./bench/kv' commands in the README and the package doc", seen)
	}
}
