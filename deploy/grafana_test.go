package deploy

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/testpeers"
)

// grafanaExprs returns every PromQL query of the dashboard (panel targets
// and template variables), by where it is.
func grafanaExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("grafana/qcluster.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/qcluster.json: %v", err)
	}
	exprs := map[string]string{}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			exprs[p.Title+"#"+string(rune('A'+i))] = tg.Expr
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			exprs["variable "+v.Name] = v.Definition
		}
	}
	return exprs
}

// scrapeFamilies returns the metric families GET /metrics of addr serves,
// with their types.
func scrapeFamilies(t *testing.T, addr string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	fams := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			fams[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return fams
}

var metricName = regexp.MustCompile(`\bqcluster_[a-z0-9_]+`)

// TestGrafanaQueriesRealMetrics: every metric the Grafana dashboard
// queries is one a real peer registers (scraped from the leader and a
// follower of a 3-peer cluster), with the series suffixes of its type, and
// is documented in docs/metrics.md; and the dashboard covers leadership,
// members by health and every refusal counter.
func TestGrafanaQueriesRealMetrics(t *testing.T) {
	exprs := grafanaExprs(t)
	p := testpeers.Start(t, 3)
	deadline := time.Now().Add(15 * time.Second)
	lead := -1
	for lead < 0 {
		for i, c := range p.Peers {
			if c.IsLeader() {
				lead = i
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	fams := scrapeFamilies(t, p.Addr(lead))
	for name, typ := range scrapeFamilies(t, p.Addr((lead+1)%3)) {
		fams[name] = typ
	}
	docs, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for where, expr := range exprs {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q queries no qcluster metric", where, expr)
		}
		for _, n := range names {
			fam, typ := n, fams[n]
			if typ == "" {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(n, suffix); ok && fams[base] == "histogram" {
						fam, typ = base, "histogram"
					}
				}
			}
			if typ == "" {
				t.Errorf("%s: %s is no metric a peer registers", where, n)
				continue
			}
			if typ == "histogram" && fam == n {
				t.Errorf("%s: %s is a histogram: query its _bucket series", where, n)
			}
			used[fam] = true
			if !strings.Contains(string(docs), "`"+fam+"`") {
				t.Errorf("%s: %s is not in docs/metrics.md", where, fam)
			}
		}
	}
	for _, want := range []string{
		"qcluster_is_leader", "qcluster_term", "qcluster_leader_changes_total", "qcluster_lease_remaining_seconds",
		"qcluster_members_alive", "qcluster_members_suspect", "qcluster_members_dead", "qcluster_members_left",
		"qcluster_raft_messages_refused_total", "qcluster_api_requests_refused_total", "qcluster_raft_streams_refused_total",
	} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
	var unused []string
	for name := range fams {
		if strings.HasPrefix(name, "qcluster_") && !used[name] {
			unused = append(unused, name)
		}
	}
	slices.Sort(unused)
	t.Logf("metrics not on the dashboard: %v", unused)
}
