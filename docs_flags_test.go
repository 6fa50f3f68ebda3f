package qcluster

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsExampleFlags: every "go run ./examples/<name> ..." in the
// READMEs and docs gives the config with -config, as every example takes
// it, and uses only flags the example's main.go defines.
func TestDocsExampleFlags(t *testing.T) {
	docs, _ := filepath.Glob("examples/*/README.md")
	more, _ := filepath.Glob("docs/*.md")
	docs = append(append(docs, "README.md"), more...)
	run := regexp.MustCompile("go run \\./examples/([a-z][a-z0-9-]*)((?:[ \t]+[^\\s#|&;`]+)*)")
	flagDef := regexp.MustCompile(`flag\.[A-Za-z]+\("([a-z][a-z0-9-]*)"`)
	seen := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range run.FindAllStringSubmatch(string(b), -1) {
			seen++
			src, err := os.ReadFile(filepath.Join("examples", m[1], "main.go"))
			if err != nil {
				t.Errorf("%s: %q: no such example: %v", doc, m[0], err)
				continue
			}
			defined := map[string]bool{}
			for _, d := range flagDef.FindAllStringSubmatch(string(src), -1) {
				defined[d[1]] = true
			}
			if !defined["config"] {
				t.Errorf("examples/%s/main.go has no -config flag, unlike the other examples", m[1])
			}
			args := strings.Fields(m[2])
			for i := 0; i < len(args); i++ {
				a := args[i]
				if !strings.HasPrefix(a, "-") {
					t.Errorf("%s: %q: positional argument %q; give the config as -config <file>", doc, m[0], a)
					continue
				}
				name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if !defined[name] {
					t.Errorf("%s: %q: examples/%s has no flag -%s", doc, m[0], m[1], name)
				}
				if !hasValue {
					i++ // its value
				}
			}
		}
	}
	if seen < 3 {
		t.Fatalf("found only %d 'go run ./examples/...' lines in the docs", seen)
	}
}
