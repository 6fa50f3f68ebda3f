package proccluster

import (
	"slices"
	"testing"
)

// TestAgentEnvDropsConfigVariables: agents started from a shell with
// QCLUSTER_<FIELD> variables get the config file's values, not those; other
// variables (the client commands' QCLUSTER_ADDR included) pass.
func TestAgentEnvDropsConfigVariables(t *testing.T) {
	got := agentEnv([]string{"PATH=/bin", "QCLUSTER_IDENTIFIER=x", "QCLUSTER_LISTEN_PORT=1", "QCLUSTER_API_TOKEN=t", "QCLUSTER_ADDR=h:1", "HOME=/root"})
	if want := []string{"PATH=/bin", "QCLUSTER_ADDR=h:1", "HOME=/root"}; !slices.Equal(got, want) {
		t.Errorf("agentEnv: %q, want %q", got, want)
	}
}
