package api

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Reasons of RequestInfo.Refused: why a request that would change the
// cluster was refused before it reached the Backend.
const (
	// RefusedCrossOrigin: the request came from a web page of another
	// origin (its Origin header names another scheme, host or port than
	// the peer's own, or Sec-Fetch-Site says it is not same-origin).
	// 403 cross_origin.
	RefusedCrossOrigin = "cross_origin"
	// RefusedContentType: the request does not say its body is JSON
	// (Content-Type: application/json), as every client of the API does
	// and as a web page cannot without the browser asking the peer first.
	// 415 unsupported_media_type.
	RefusedContentType = "content_type"
)

// RefusedReasons lists the values RequestInfo.Refused takes besides "": a
// small fixed set, fit for a metric label.
func RefusedReasons() []string { return []string{RefusedCrossOrigin, RefusedContentType} }

// crossSite tells whether r, a request to an endpoint that changes the
// cluster, must be refused because a browser may have sent it on behalf of
// another web site (cross-site request forgery): any page can make a
// browser POST to http://localhost:7001/v1/self/leave without asking the
// peer first, as long as the request looks like a form ("simple" requests:
// no custom header, a text/plain or form Content-Type). So:
//
//   - Sec-Fetch-Site, which browsers set and pages cannot, must be
//     "same-origin" or "none" (typed by the user) when present;
//   - Origin, which browsers set on every cross-origin POST, PUT, DELETE and
//     PATCH and pages cannot, must name the peer itself when present: the
//     scheme (http, or https on TLS) and host:port the request reached;
//   - Content-Type must be application/json (parameters such as charset
//     allowed), even for an empty body: a page can send that only after a
//     CORS preflight, which the API never grants.
//
// Programs (curl, the Go client, other peers) send no Origin and no
// Sec-Fetch-Site, and set the Content-Type. It returns "" when r may pass,
// else the reason (RefusedCrossOrigin or RefusedContentType) and the
// answer to send.
func crossSite(r *http.Request) (reason string, status int, code, msg string) {
	if site := r.Header.Values("Sec-Fetch-Site"); len(site) > 0 {
		if len(site) != 1 || (site[0] != "same-origin" && site[0] != "none") {
			return RefusedCrossOrigin, http.StatusForbidden, CodeCrossOrigin,
				fmt.Sprintf("refused: the browser says this request comes from another site (Sec-Fetch-Site: %s); "+
					"the API does not take changes from web pages of other origins", truncate(strings.Join(site, ", "), 40))
		}
	}
	if origins := r.Header.Values("Origin"); len(origins) > 0 {
		self := selfOrigin(r)
		if len(origins) != 1 || self == "" || !sameOrigin(origins[0], self) {
			return RefusedCrossOrigin, http.StatusForbidden, CodeCrossOrigin,
				fmt.Sprintf("refused: the request comes from the web page origin %q, not from this peer's own origin %q; "+
					"the API does not take changes from web pages of other origins (programs send no Origin header)",
					truncate(strings.Join(origins, ", "), 80), truncate(self, 80))
		}
	}
	ct := r.Header.Values("Content-Type")
	if len(ct) == 1 {
		if mt, _, err := mime.ParseMediaType(ct[0]); err == nil && mt == "application/json" {
			return "", 0, "", ""
		}
	}
	what := "no Content-Type"
	if len(ct) > 0 {
		what = fmt.Sprintf("Content-Type %q", truncate(strings.Join(ct, ", "), 60))
	}
	return RefusedContentType, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
		"the request has " + what + "; send 'Content-Type: application/json' (also with an empty body): " +
			"requests that change the cluster must say they carry JSON"
}

// selfOrigin is the origin the request reached: http or https (TLS) and
// its Host, with the port made explicit. It is "" when Host is not a
// host[:port].
func selfOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	hp, ok := hostPort(scheme, r.Host)
	if !ok {
		return ""
	}
	return scheme + "://" + hp
}

// sameOrigin reports whether origin (an Origin header) is self (a
// selfOrigin): the same scheme, host and port. An origin is scheme://host
// with an optional port and nothing else; "null" and anything else with a
// path, a query, a user or a fragment is never the same.
func sameOrigin(origin, self string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Opaque != "" || u.User != nil || u.Path != "" ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return false
	}
	hp, ok := hostPort(scheme, u.Host)
	return ok && scheme+"://"+hp == self
}

// hostPort normalizes host[:port] (a Host header or the host of an
// origin): lower case, the scheme's default port made explicit.
func hostPort(scheme, hostport string) (string, bool) {
	if hostport == "" || strings.ContainsAny(hostport, "/?#@ ") {
		return "", false
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1] // [::1] without a port
	} else if strings.Contains(hostport, ":") {
		return "", false
	}
	if host == "" {
		return "", false
	}
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(host), port), true
}

// markRefused notes why the request was refused, for Options.OnRequest.
func markRefused(w http.ResponseWriter, reason string) {
	if rec, ok := w.(*recorder); ok {
		rec.refused = reason
	}
}
