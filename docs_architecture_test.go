package qcluster

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// declaredNames returns every name declared in the non-test Go files of
// the module's packages (functions, methods, types, fields, interface
// methods, constants, variables) and the package names.
func declaredNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	dirs := []string{".", "api", "client", "kv"}
	sub, _ := filepath.Glob("internal/*")
	dirs = append(dirs, sub...)
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			names[file.Name.Name] = true
			ast.Inspect(file, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.FuncDecl:
					names[n.Name.Name] = true
				case *ast.TypeSpec:
					names[n.Name.Name] = true
				case *ast.ValueSpec:
					for _, id := range n.Names {
						names[id.Name] = true
					}
				case *ast.Field:
					for _, id := range n.Names {
						names[id.Name] = true
					}
				}
				return true
			})
		}
	}
	return names
}

// TestDocsArchitectureNames: every Go name, route and metric that
// docs/architecture.md shows in code spans exists.
func TestDocsArchitectureNames(t *testing.T) {
	b, err := os.ReadFile("docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	names := declaredNames(t)
	var apiSrc, metricsDoc strings.Builder
	for _, f := range []string{"api/api.go", "api/watch.go", "api/membership.go"} {
		s, _ := os.ReadFile(f)
		apiSrc.Write(s)
	}
	s, _ := os.ReadFile("docs/metrics.md")
	metricsDoc.Write(s)
	agentSrc, _ := os.ReadFile("cmd/qcluster/agent.go")
	// The pictures: each dotted name (a Go name, or a file).
	fence := regexp.MustCompile("(?s)```.*?```")
	dotted := regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+`)
	pictures := 0
	for _, block := range fence.FindAllString(string(b), -1) {
		pictures++
		for _, name := range dotted.FindAllString(block, -1) {
			if strings.HasSuffix(name, ".go") {
				if _, err := os.Stat(name); err != nil {
					t.Errorf("docs/architecture.md: picture names %s: %v", name, err)
				}
				continue
			}
			for _, part := range strings.Split(name, ".") {
				if !names[part] {
					t.Errorf("docs/architecture.md: picture names %s: no Go name %s", name, part)
				}
			}
		}
	}
	if pictures < 3 {
		t.Fatalf("docs/architecture.md has %d pictures", pictures)
	}
	text := fence.ReplaceAllString(string(b), "")
	goName := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	checked := 0
	for _, span := range spans(text) {
		span = strings.TrimSuffix(span, "()")
		span = strings.TrimPrefix(span, "GET ")
		switch {
		case strings.HasPrefix(span, "internal/"):
			if st, err := os.Stat(span); err != nil || !st.IsDir() {
				t.Errorf("docs/architecture.md: no package %s", span)
			}
		case strings.HasPrefix(span, "/v1/"):
			if !strings.Contains(apiSrc.String(), span) {
				t.Errorf("docs/architecture.md: route %s is not in package api", span)
			}
		case strings.HasPrefix(span, "qcluster_"):
			if !strings.Contains(metricsDoc.String(), span) {
				t.Errorf("docs/architecture.md: metric %s is not in docs/metrics.md", span)
			}
		case goName.MatchString(span) && !strings.Contains(span, "_"):
			for _, part := range strings.Split(span, ".") {
				if !names[part] {
					t.Errorf("docs/architecture.md: %s: no Go name %s", span, part)
				}
			}
		case strings.HasPrefix(span, "--"):
			if !strings.Contains(string(agentSrc), `("`+span[2:]+`", `) {
				t.Errorf("docs/architecture.md: %s is not a flag of qcluster agent", span)
			}
		case span == "data_dir":
		default:
			t.Errorf("docs/architecture.md: code span %q is neither a Go name, a route nor a metric", span)
		}
		checked++
	}
	if checked < 20 {
		t.Fatalf("only %d code spans checked", checked)
	}
}
