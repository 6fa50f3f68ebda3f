package api

import (
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestUIServesTheDashboardUnderItsPolicy: every file of the dashboard is
// served under /ui/ with the Content-Security-Policy that lets the page run
// only its own script file and talk only to its own peer, and /ui
// redirects to /ui/.
func TestUIServesTheDashboardUnderItsPolicy(t *testing.T) {
	h := NewHandler(newFake(leaderB))
	for path, ctype := range map[string]string{
		"/ui/":          "text/html",
		"/ui/app.js":    "text/javascript",
		"/ui/style.css": "text/css",
	} {
		rec := serve(h, http.MethodGet, path)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		if got := rec.Header().Get("Content-Type"); !strings.HasPrefix(got, ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", path, got, ctype)
		}
		if got := rec.Header().Get("Content-Security-Policy"); got != UIContentSecurityPolicy {
			t.Errorf("GET %s: Content-Security-Policy %q, want %q", path, got, UIContentSecurityPolicy)
		}
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", path, got)
		}
	}
	for _, directive := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(UIContentSecurityPolicy, directive) {
			t.Errorf("the policy %q lacks %q", UIContentSecurityPolicy, directive)
		}
	}
	if strings.Contains(UIContentSecurityPolicy, "unsafe-") {
		t.Errorf("the policy %q allows something unsafe", UIContentSecurityPolicy)
	}
	if rec := serve(h, http.MethodGet, "/ui"); rec.Code/100 != 3 || rec.Header().Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d Location %q, want a redirect to /ui/", rec.Code, rec.Header().Get("Location"))
	}
	if rec := serve(h, http.MethodGet, "/ui/nothing.js"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /ui/nothing.js: %d", rec.Code)
	}
	if rec := serve(h, http.MethodPost, "/ui/"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/: %d", rec.Code)
	}
}

// TestUIHasNoInlineCodeNorOutsideResources: the policy forbids inline
// script and style and every other origin, so the page must not need them:
// every script and stylesheet is a file of the dashboard, and no handler is
// written in an attribute.
func TestUIHasNoInlineCodeNorOutsideResources(t *testing.T) {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		t.Fatal(err)
	}
	html, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	page := string(html)
	for _, m := range regexp.MustCompile(`<script([^>]*)>([^<]*)</script>`).FindAllStringSubmatch(page, -1) {
		if strings.TrimSpace(m[2]) != "" || !strings.Contains(m[1], `src="`) {
			t.Errorf("inline script: %s", m[0])
		}
	}
	for _, bad := range []string{"<style", " style=", " onclick=", " onload=", " onsubmit=", "http://", "https://", "//cdn"} {
		if strings.Contains(page, bad) {
			t.Errorf("index.html contains %q, which the policy would block", bad)
		}
	}
	for _, ref := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		if _, err := fs.Stat(sub, ref[1]); err != nil {
			t.Errorf("index.html refers to %s, which the dashboard does not serve: %v", ref[1], err)
		}
	}
	js, err := fs.ReadFile(sub, "app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function", "document.write", "new EventSource"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s: API values must go on the page as text, and the stream must carry the token", bad)
		}
	}
	// The page reads what the API documents.
	for _, path := range []string{`"/v1/status"`, `"/v1/peers"`, `"/v1/watch"`, `"Last-Event-ID"`, `"Bearer "`, `"` + EventLeader + `"`, `"` + EventMember + `"`} {
		if !strings.Contains(string(js), path) {
			t.Errorf("app.js does not use %s", path)
		}
	}
}

// TestUIOpensNoData: with a token and protected reads, the dashboard's
// files load without the token (they hold no cluster data), and the data
// calls the page makes still need it.
func TestUIOpensNoData(t *testing.T) {
	h := NewHandlerWithOptions(newFake(leaderB), Options{Token: "s3cret", ProtectReads: true})
	if rec := serve(h, http.MethodGet, "/ui/"); rec.Code != http.StatusOK {
		t.Fatalf("GET /ui/ without a token: %d", rec.Code)
	}
	for _, path := range []string{"/v1/status", "/v1/peers", "/v1/watch"} {
		if rec := serve(h, http.MethodGet, path); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token beside the dashboard: %d, want 401", path, rec.Code)
		}
	}
}
