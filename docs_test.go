package qcluster

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Docs are tested like code: the names they show must be the names the
// code sends.

// docRow returns the cells of the Markdown table row of file whose first
// cell is first.
func docRow(t *testing.T, file, first string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) > 1 && strings.TrimSpace(cells[0]) == first {
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			return cells
		}
	}
	t.Fatalf("%s has no table row starting with %s", file, first)
	return nil
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

// spans returns the code spans of s.
func spans(s string) []string {
	var out []string
	for _, m := range codeSpan.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestDocsMemberEventTypes: the member event types docs/api.md lists are
// exactly the ones /v1/watch sends (every EventType but the leadership
// one, which travels as "leader" events).
func TestDocsMemberEventTypes(t *testing.T) {
	var sent []string
	for typ := EventJoined; typ < EventLeaderChanged; typ++ {
		name := typ.String()
		if strings.HasPrefix(name, "event(") {
			t.Fatalf("EventType %d has no name", typ)
		}
		sent = append(sent, name)
	}
	documented := spans(docRow(t, "docs/api.md", "`type`")[1])
	slices.Sort(sent)
	slices.Sort(documented)
	if !slices.Equal(sent, documented) {
		t.Errorf("docs/api.md documents the member event types %q; the code sends %q", documented, sent)
	}
}

// apiConsts returns the string constants of package api whose names start
// with prefix, by name.
func apiConsts(t *testing.T, prefix string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "api/api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					out[n.Name], _ = strconv.Unquote(lit.Value)
				}
			}
		}
	}
	return out
}

// TestDocsErrorCodes: the error table of docs/api.md lists every Code of
// package api, and only those.
func TestDocsErrorCodes(t *testing.T) {
	codes := apiConsts(t, "Code")
	if len(codes) < 10 {
		t.Fatalf("found only %d Code constants in api/api.go: %v", len(codes), codes)
	}
	b, err := os.ReadFile("docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	row := regexp.MustCompile("^\\| (\\d{3}) \\| `([a-z_]+)` \\|")
	for _, line := range strings.Split(string(b), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			documented[m[2]] = true
		}
	}
	known := map[string]bool{}
	for name, code := range codes {
		known[code] = true
		if !documented[code] {
			t.Errorf("api.%s (%q) is missing from the error table of docs/api.md", name, code)
		}
	}
	for code := range documented {
		if !known[code] {
			t.Errorf("docs/api.md documents the error code %q, which package api does not have", code)
		}
	}
}

// TestDocsCurlChangesSendJSON: every curl example that changes the cluster
// (a POST, PUT, DELETE or PATCH, or one with a body) sends
// Content-Type: application/json, without which the API answers 415.
func TestDocsCurlChangesSendJSON(t *testing.T) {
	files := []string{"README.md", "docs/api.md", "docs/security.md", "docs/metrics.md",
		"examples/minimal/README.md", "examples/http-leader/README.md", "examples/sharding/README.md"}
	changes := regexp.MustCompile(`-X\s*(POST|PUT|DELETE|PATCH)\b|\s(-d|--data\S*)\s`)
	seen := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		// Join continued lines, then look at each command.
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		for _, line := range strings.Split(text, "\n") {
			i := strings.Index(line, "curl ")
			if i < 0 {
				continue
			}
			cmd, _, _ := strings.Cut(line[i:], " | ") // the curl command, not what it pipes to
			if !changes.MatchString(cmd) {
				continue
			}
			seen++
			if !strings.Contains(cmd, "Content-Type: application/json") {
				t.Errorf("%s: %q changes the cluster without -H 'Content-Type: application/json' (the API answers 415)", file, strings.TrimSpace(line))
			}
		}
	}
	if seen < 10 {
		t.Errorf("found only %d curl examples that change the cluster", seen)
	}
}

// TestCloseDoesNotLeave is what the README says of Close: the peer stops
// but stays a member (a voter), and the others see it fail, not leave.
func TestCloseDoesNotLeave(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.waitLeader(10 * time.Second)
	gone := tc.cfgs[2].Identifier
	tc.stop(2)
	tc.waitLeader(10 * time.Second) // one of the other two: a voter that is gone is not a leader
	for _, p := range tc.peers[:2] {
		found := false
		for _, m := range p.Peers() {
			if m.Identifier != gone {
				continue
			}
			found = true
			if !m.Voter || m.Role != MemberFollower || m.Health == HealthLeft {
				t.Errorf("%s sees the closed %s as %+v; want a voter, not left", p.cfg.Identifier, gone, m)
			}
		}
		if !found {
			t.Errorf("%s no longer lists the closed %s", p.cfg.Identifier, gone)
		}
	}
}
