package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = (&Main{Stdout: &out, Stderr: &errb}).Run(t.Context(), args)
	return out.String(), err
}

// TestMistypedCommandsAndFlagsSuggest: a mistyped command or flag is a
// usage error that names the one meant.
func TestMistypedCommandsAndFlagsSuggest(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stauts"}, `unknown command "stauts"; did you mean "status"?`},
		{[]string{"help", "leder"}, `unknown command "leder"; did you mean "leader"?`},
		{[]string{"agnet", "--config", "x"}, `did you mean "agent"?`},
		{[]string{"agent", "--lisen-port", "7001"}, "agent: unknown flag -lisen-port; did you mean --listen-port?"},
		{[]string{"status", "--adr", "localhost:7001"}, "status: unknown flag -adr; did you mean --addr?"},
		{[]string{"peers", "--outptu", "json"}, "did you mean --output?"},
		{[]string{"completion", "zhs"}, `unknown shell "zhs"; did you mean "zsh"?`},
	} {
		_, err := runCLI(t, tc.args...)
		if ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (exit %d), want %q", tc.args, err, ExitCode(err), tc.want)
		}
	}
	// Nothing close: no suggestion.
	if _, err := runCLI(t, "frobnicate"); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("frobnicate: %v", err)
	}
}

// TestEveryCommandHasHelpWithAnExample: "qcluster <command> -h" (and
// --help) prints the command's usage with at least one example of it.
func TestEveryCommandHasHelpWithAnExample(t *testing.T) {
	for _, cmd := range commands {
		if cmd == "help" {
			continue
		}
		for _, h := range []string{"-h", "--help"} {
			out, err := runCLI(t, cmd, h)
			if err != nil {
				t.Errorf("%s %s: %v", cmd, h, err)
				continue
			}
			if !strings.Contains(out, "Example") || !strings.Contains(out, "\tqcluster "+cmd) && !strings.Contains(out, " qcluster "+cmd) {
				t.Errorf("qcluster %s %s shows no example of the command:\n%s", cmd, h, out)
			}
		}
	}
}

// TestCompletionScripts: each shell's script names every command and the
// flags of each (read from their help), and bash's completes for real.
func TestCompletionScripts(t *testing.T) {
	for _, sh := range shells {
		out, err := runCLI(t, "completion", sh)
		if err != nil {
			t.Fatalf("completion %s: %v", sh, err)
		}
		for _, w := range append([]string{"print-config", "listen-port", "cluster-key", "learner"}, commands...) {
			if !strings.Contains(out, w) {
				t.Errorf("completion %s does not offer %q", sh, w)
			}
		}
		if path, err := exec.LookPath(sh); err == nil {
			script := filepath.Join(t.TempDir(), "qcluster."+sh)
			if err := os.WriteFile(script, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(path, "-n", script).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v: %s", sh, err, b)
			}
		}
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the bash completion in")
	}
	script, _ := runCLI(t, "completion", "bash")
	for _, tc := range []struct {
		line []string
		want string
	}{
		{[]string{"qcluster", "sta"}, "status"},
		{[]string{"qcluster", "agent", "--print-c"}, "--print-config"},
		{[]string{"qcluster", "status", "--ad"}, "--addr"},
		{[]string{"qcluster", "completion", "fi"}, "fish"},
	} {
		prog := script + "\nCOMP_WORDS=(" + strings.Join(tc.line, " ") + "); COMP_CWORD=" + itoa(len(tc.line)-1) + "; _qcluster; echo \"${COMPREPLY[*]}\"\n"
		b, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput()
		if err != nil || strings.TrimSpace(string(b)) != tc.want {
			t.Errorf("completing %q: %q, %v; want %q", tc.line, b, err, tc.want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
