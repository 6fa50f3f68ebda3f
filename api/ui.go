package api

import (
	"embed"
	"io/fs"
	"net/http"
)

// The dashboard: plain HTML, CSS and JavaScript embedded in the binary, no
// build step and nothing loaded from elsewhere.
//
//go:embed ui/index.html ui/app.js ui/style.css
var uiFiles embed.FS

// UIPath is where every peer serves its dashboard.
const UIPath = "/ui/"

// UIContentSecurityPolicy is the Content-Security-Policy of every answer
// under /ui/: the page runs only its own script file (no inline script, no
// eval), loads its style and nothing else, talks only to its own peer, and
// cannot be framed by another site.
const UIContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ui serves the dashboard's files. They hold no cluster data, so they need
// no token; the page reads the cluster through the API (/v1/status,
// /v1/peers, /v1/watch) and sends the token the user gives it when the
// peer protects reads.
func ui() http.HandlerFunc {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic("api: the embedded dashboard is missing: " + err.Error())
	}
	files := http.StripPrefix(UIPath, http.FileServerFS(sub))
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", UIContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}
}
