// Package dashboard tests the dashboard every peer serves at /ui/ in a real
// headless Chromium, driven with chromedp, against real in-process peers:
// the page shows the members and the leader, follows a fail-over live from
// the /v1/watch stream, asks for the API token when reads are protected,
// and fits a phone's screen.
//
// The tests need a Chromium binary (Debian: apt-get install chromium). They
// look for QCLUSTER_CHROMIUM, then chromium, chromium-browser,
// google-chrome and headless-shell on PATH; when none is found they skip
// and say so, unless QCLUSTER_REQUIRE_CHROMIUM is set (as CI does), which
// makes that a failure. QCLUSTER_DASHBOARD_PNG=<dir> saves screenshots
// there (the README's come from it).
package dashboard
