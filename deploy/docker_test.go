package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"
)

// TestComposeClusterInDocker builds the image and runs deploy/compose.yaml
// for real where a Docker engine is available: the three peers become
// healthy (their healthcheck passes once each knows a leader, which
// `docker compose up --wait` waits for) and agree on one leader. Where
// there is no Docker it skips and says so; the files are then checked by
// their text only (TestDockerfileBuildsAStaticNonRootImage and the compose
// tests).
func TestComposeClusterInDocker(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not building the image")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed here: the Dockerfile and deploy/compose.yaml are checked by their text only")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers (docker info: %v): the files are checked by their text only\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "docker", "compose", "version").CombinedOutput(); err != nil {
		t.Skipf("docker compose is not installed (%v): the files are checked by their text only\n%s", err, out)
	}
	project := fmt.Sprintf("qcluster-test-%d", time.Now().UnixNano())
	compose := func(args ...string) ([]byte, error) {
		all := append([]string{"compose", "-p", project, "-f", "compose.yaml"}, args...)
		return exec.CommandContext(ctx, "docker", all...).CombinedOutput()
	}
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "compose", "-p", project, "-f", "compose.yaml", "down", "-v", "--timeout", "20").CombinedOutput(); err != nil {
			t.Logf("docker compose down: %v\n%s", err, out)
		}
	})
	if out, err := compose("up", "-d", "--build", "--wait", "--wait-timeout", "300"); err != nil {
		logs, _ := compose("logs", "--tail", "40")
		t.Fatalf("docker compose up: %v\n%s\n%s", err, out, logs)
	}
	leaders := map[string]bool{}
	for _, port := range []int{7001, 7002, 7003} {
		var st struct {
			Leader *struct {
				Identifier string `json:"identifier"`
			} `json:"leader"`
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/status", port))
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || st.Leader == nil {
			t.Fatalf("port %d: no leader (%v)", port, err)
		}
		leaders[st.Leader.Identifier] = true
	}
	if len(leaders) != 1 {
		t.Fatalf("the peers name different leaders: %v", leaders)
	}
}
