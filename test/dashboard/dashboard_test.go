package dashboard

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/internal/testpeers"
)

// chromium returns the browser to drive, or skips the test (fails it when
// QCLUSTER_REQUIRE_CHROMIUM is set).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("QCLUSTER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found (QCLUSTER_CHROMIUM, or chromium, chromium-browser, google-chrome, headless-shell on PATH); " +
		"install it (Debian: apt-get install chromium) to test the dashboard in a browser"
	if os.Getenv("QCLUSTER_REQUIRE_CHROMIUM") != "" {
		t.Fatal(msg + "; QCLUSTER_REQUIRE_CHROMIUM is set, so this fails")
	}
	t.Skip(msg)
	return ""
}

// browser starts a headless Chromium for the test and returns its context.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	// Start the browser now (the first Run on ctx ties it to ctx).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromium(t), err)
	}
	return ctx
}

// page is the dashboard open in a browser tab.
type page struct {
	t   *testing.T
	ctx context.Context
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](p *page, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// js evaluates a JavaScript expression that gives a string.
func (p *page) js(expr string) string {
	s, err := eval[string](p, expr)
	if err != nil {
		p.t.Fatalf("%s: %v", expr, err)
	}
	return s
}

// waitFor polls the page until expr (a JavaScript expression giving a
// string) gives want, and returns when it did.
func (p *page) waitFor(what, expr, want string, timeout time.Duration) time.Time {
	p.t.Helper()
	return p.waitForFunc(what, expr, func() string { return want }, timeout)
}

// waitForFunc is waitFor with a want that is read again at each poll: for
// facts about the cluster that may legitimately change while the page
// catches up (on a loaded machine, leadership may move).
func (p *page) waitForFunc(what, expr string, wantFn func() string, timeout time.Duration) time.Time {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := eval[string](p, expr)
		if err != nil {
			p.t.Fatalf("%s: %s: %v", what, expr, err)
		}
		want := wantFn()
		if got == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: after %v the page shows %q, want %q; timeline:\n%s", what, timeout, got, want, p.timeline())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *page) timeline() string {
	s, _ := eval[string](p, `Array.from(document.querySelectorAll("#timeline li")).map(li => li.textContent).join("\n")`)
	return s
}

func open(t *testing.T, ctx context.Context, url string) *page {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return &page{t: t, ctx: ctx}
}

func (p *page) screenshot(name string) {
	dir := os.Getenv("QCLUSTER_DASHBOARD_PNG")
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

const (
	leaderJS  = `document.getElementById("leader").dataset.leader || ""`
	membersJS = `Array.from(document.querySelectorAll("#members tbody tr")).map(tr => tr.dataset.id + ":" + tr.dataset.role + ":" + tr.dataset.state).join(" ")`
	connJS    = `document.getElementById("conn").dataset.state`
)

// leaderOf waits until one of the running peers holds the lease and the
// others name it, and returns its index.
func leaderOf(t *testing.T, p *testpeers.Peers, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lead, agreed := -1, true
		for i, c := range p.Peers {
			if c != nil && c.IsLeader() {
				lead = i
			}
		}
		if lead >= 0 {
			for _, c := range p.Peers {
				if c == nil {
					continue
				}
				if l, ok := c.Leader(); !ok || l.Identifier != p.Configs[lead].Identifier {
					agreed = false
				}
			}
			if agreed {
				return lead
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agreed leader after %v", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDashboardFollowsAFailover: on a follower of three real peers, the
// page shows the three members and the leader; when the leader stops, the
// page shows the new leader within a second of the survivors agreeing on
// it, from the event stream, without a reload.
func TestDashboardFollowsAFailover(t *testing.T) {
	ctx := browser(t, 1100, 900)
	p := testpeers.Start(t, 3)
	// The page is opened on a follower and shows whoever leads. Under
	// -race on a loaded machine a spurious election may move leadership
	// before the fail-over below, so what the page must show is read again
	// at each poll; the leader to stop is the one the peers agree on then.
	f := (leaderOf(t, p, 10*time.Second) + 1) % 3
	pg := open(t, ctx, "http://"+p.Addr(f)+"/ui/")
	pg.waitFor("the stream", connJS, "live", 15*time.Second)
	leaderNow := func() string { return p.Configs[leaderOf(t, p, 10*time.Second)].Identifier }
	pg.waitForFunc("the leader", leaderJS, leaderNow, 10*time.Second)
	membersNow := func() string {
		lead := leaderOf(t, p, 10*time.Second)
		var want []string
		for i := range 3 {
			role := "follower"
			if i == lead {
				role = "leader"
			}
			want = append(want, fmt.Sprintf("p%d:%s:alive", i, role))
		}
		return strings.Join(want, " ")
	}
	pg.waitForFunc("the members", membersJS, membersNow, 10*time.Second)
	if got := pg.js(`Array.from(document.querySelectorAll("#members tbody tr td[data-label=Check]")).map(td => td.textContent).join(" ")`); got != "none none none" {
		t.Errorf("the Check column reads %q, want none for each member (no health_check)", got)
	}
	pg.waitForFunc("the term of the page's peer", `document.getElementById("term").textContent`, func() string { return fmt.Sprint(p.Peers[f].Term()) }, 5*time.Second)
	if got := pg.js(`getComputedStyle(document.getElementById("auth")).display`); got != "none" {
		t.Errorf("the token form shows (display %q) on a peer that needs no token", got)
	}

	// A second tab shows the leader's own dashboard, which loses its peer.
	tab, closeTab := chromedp.NewContext(ctx)
	defer closeTab()
	if err := chromedp.Do(tab); err != nil { // open the tab (tied to this context, no deadline)
		t.Fatal(err)
	}
	// The leader to stop: the one the peers agree on now, shown on the
	// page (it may have moved since the checks above; the page follows).
	lead := leaderOf(t, p, 10*time.Second)
	leaderID := p.Configs[lead].Identifier
	pg.waitFor("the leader before the stop", leaderJS, leaderID, 10*time.Second)
	lp := open(t, tab, "http://"+p.Addr(lead)+"/ui/")
	lp.waitFor("the leader's own page", connJS, "live", 15*time.Second)
	if lead == f {
		// The page's own peer leads: stop it and the page loses its
		// stream, which is the second tab's case. It resigns first (the
		// operator's way to move leadership off a peer).
		t.Logf("the page's peer %s leads; it hands leadership over first", leaderID)
		if err := p.Peers[f].Resign(context.Background()); err != nil {
			t.Fatalf("hand leadership over: %v", err)
		}
		lead = leaderOf(t, p, 10*time.Second)
		leaderID = p.Configs[lead].Identifier
		pg.waitFor("the leader after the hand-over", leaderJS, leaderID, 10*time.Second)
		lp = open(t, tab, "http://"+p.Addr(lead)+"/ui/")
		lp.waitFor("the leader's own page", connJS, "live", 15*time.Second)
	}

	// Stop the leader; note when the survivors agree on a new one, and
	// when the page shows it.
	s1, s2 := p.Peers[f], p.Peers[3-f-lead]
	stopped := time.Now()
	p.Stop(lead)
	agreedCh := make(chan time.Time, 1)
	go func() {
		for {
			lf, okf := s1.Leader()
			lo, oko := s2.Leader()
			if okf && oko && lf.Identifier != leaderID && lf.Identifier == lo.Identifier {
				agreedCh <- time.Now()
				return
			}
			if time.Since(stopped) > 20*time.Second {
				close(agreedCh)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	newLead := leaderOf(t, p, 20*time.Second)
	newID := p.Configs[newLead].Identifier
	shown := pg.waitFor("the new leader", leaderJS, newID, 20*time.Second)
	agreed, ok := <-agreedCh
	if !ok {
		t.Fatal("the survivors never agreed on a new leader")
	}
	lag := shown.Sub(agreed)
	t.Logf("leader %s stopped; survivors agreed on %s after %v; the page showed it %v after that", leaderID, newID, agreed.Sub(stopped), lag)
	if lag > time.Second {
		t.Errorf("the page showed the new leader %v after the survivors agreed on it, want within 1s", lag)
	}
	// The page got there from the stream (it is still live, not reloaded),
	// and the fail-over is on the timeline and in the banner.
	if got := pg.js(connJS); got != "live" {
		t.Errorf("the stream is %q after the fail-over", got)
	}
	// The fail-over is in the banner and on the timeline. (The banner shows
	// the latest change: on a loaded machine the survivors may elect again
	// after it, which the timeline keeps too.)
	if banner := pg.js(`document.getElementById("failover").hidden ? "" : document.getElementById("failover").textContent`); banner == "" {
		t.Errorf("no fail-over banner after the leader stopped")
	}
	if tl := pg.timeline(); !strings.Contains(tl, leaderID+" \u2192 "+newID) {
		t.Errorf("the timeline does not show %s → %s:\n%s", leaderID, newID, tl)
	}
	// The leader's own page says it lost its peer and links to the others'
	// dashboards.
	lp.waitFor("the lost peer's page", connJS, "reconnecting", 15*time.Second)
	var others []string
	for i := range 3 {
		if i != lead {
			others = append(others, "http://"+p.Addr(i)+"/ui/")
		}
	}
	slices.Sort(others) // as the page's sort() orders them: by UTF-16 code units, the same for these ASCII URLs
	lp.waitFor("links to the other peers", `Array.from(document.querySelectorAll("#elsewhere a")).map(a => a.href).sort().join(" ")`, strings.Join(others, " "), 5*time.Second)

	// The stopped member is shown as no longer alive once gossip says so.
	pg.waitFor("the stopped member's health", `(document.querySelector('#members tr[data-id="`+leaderID+`"]') || {dataset: {}}).dataset.state === "alive" ? "alive" : "not alive"`, "not alive", 30*time.Second)
	pg.screenshot("dashboard.png")
}

// TestDashboardAsksForTheToken: with api_protect_reads, the page asks for
// the token, sends it as a bearer token (the stream too), and then shows
// the cluster; a wrong token is refused.
func TestDashboardAsksForTheToken(t *testing.T) {
	ctx := browser(t, 1100, 900)
	p := testpeers.Start(t, 3, testpeers.WithToken("tok-123"), func(c *qcluster.Config) { c.APIProtectReads = true })
	lead := leaderOf(t, p, 10*time.Second)
	pg := open(t, ctx, "http://"+p.Addr(lead)+"/ui/")
	pg.waitFor("the token form", `getComputedStyle(document.getElementById("auth")).display === "none" ? "hidden" : document.getElementById("conn").dataset.state`, "unauthorized", 15*time.Second)
	if got := pg.js(membersJS); got != "" {
		t.Fatalf("the page shows members without the token: %q", got)
	}
	submit := func(tok string) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx,
			chromedp.SetValue("#token", tok),
			chromedp.Click(`#auth button`),
		); err != nil {
			t.Fatal(err)
		}
	}
	submit("wrong")
	pg.waitFor("a wrong token", `document.getElementById("auth").hidden ? "hidden" : document.getElementById("auth-msg").textContent.startsWith("The token was refused") ? "refused" : "asking"`, "refused", 15*time.Second)
	submit("tok-123")
	pg.waitFor("the stream", connJS, "live", 15*time.Second)
	pg.waitFor("the leader", leaderJS, p.Configs[lead].Identifier, 5*time.Second)
	if got := pg.js(`getComputedStyle(document.getElementById("auth")).display`); got != "none" {
		t.Errorf("the token form still shows (display %q) with the right token", got)
	}
	if got := pg.js(`sessionStorage.getItem("qcluster.token") || ""`); got != "tok-123" {
		t.Errorf("sessionStorage holds %q, want the token", got)
	}
	if got := pg.js(`localStorage.length === 0 ? "" : "something"`); got != "" {
		t.Errorf("the page keeps something in localStorage: the token belongs to the tab only")
	}
	if got := pg.js(`String(document.querySelectorAll("#members tbody tr").length)`); got != "3" {
		t.Errorf("the page shows %s members with the token, want 3", got)
	}
}

// TestDashboardFitsAPhone: at a phone's width the page needs no sideways
// scrolling and shows every member.
func TestDashboardFitsAPhone(t *testing.T) {
	ctx := browser(t, 390, 844)
	p := testpeers.Start(t, 3, func(c *qcluster.Config) {
		c.Metadata = map[string]any{"server_port": 8000, "zone": "europe-west1-b", "version": "1.4.2"}
	})
	lead := leaderOf(t, p, 10*time.Second)
	pg := open(t, ctx, "http://"+p.Addr(lead)+"/ui/")
	pg.waitFor("the stream", connJS, "live", 15*time.Second)
	pg.waitFor("the members", `String(document.querySelectorAll("#members tbody tr").length)`, "3", 10*time.Second)
	if w := pg.js(`document.documentElement.scrollWidth + " <= " + window.innerWidth`); func() bool {
		var a, b int
		_, err := fmt.Sscanf(w, "%d <= %d", &a, &b)
		return err != nil || a > b
	}() {
		t.Errorf("the page scrolls sideways on a phone: %s", w)
	}
	pg.screenshot("dashboard-phone.png")
}
