package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qcluster/qcluster"
)

// readmeLines returns the lines of the code blocks without a language
// (program output) in the README's "What to expect" section.
func readmeLines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "## What to expect")
	if start < 0 {
		t.Fatal(`README.md has no "## What to expect" section`)
	}
	s = s[start+1:]
	if end := strings.Index(s, "\n## "); end >= 0 {
		s = s[:end]
	}
	var lines []string
	block := "" // "": outside a code block; "out": output; else the language
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "```") && block != "":
			block = ""
		case l == "```":
			block = "out"
		case strings.HasPrefix(l, "```"):
			block = l // commands (sh), not output
		case block == "out" && l != "":
			lines = append(lines, l)
		}
	}
	if len(lines) < 5 {
		t.Fatalf("README.md shows only %d output lines: %q", len(lines), lines)
	}
	return lines
}

// linePattern turns a line the README shows into a pattern of the lines
// the program may print for it: any time, any of the three identifiers,
// any port (the test's, or another peer's server_port) and term.
var (
	timestampRE  = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d `)
	identifierRE = regexp.MustCompile(`server_[abc]`)
	portRE       = regexp.MustCompile(`\b(700|800)[1-3]\b`) // listen_port, server_port
	termRE       = regexp.MustCompile(`term=\d+`)
)

func linePattern(t *testing.T, line string) *regexp.Regexp {
	t.Helper()
	if !timestampRE.MatchString(line) {
		t.Fatalf("README.md line %q does not start with a date and time as log lines do", line)
	}
	p := regexp.QuoteMeta(timestampRE.ReplaceAllString(line, "TIMESTAMP "))
	p = strings.Replace(p, "TIMESTAMP ", `\d{4}/\d\d/\d\d \d\d:\d\d:\d\d `, 1)
	p = identifierRE.ReplaceAllString(p, `server_[abc]`)
	p = portRE.ReplaceAllString(p, `\d+`)
	p = termRE.ReplaceAllString(p, `term=\d+`)
	return regexp.MustCompile("^" + p + "$")
}

// output collects a process's output; changed is signalled at every write.
type output struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan<- struct{}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	n, err := o.b.Write(p)
	o.mu.Unlock()
	select {
	case o.changed <- struct{}{}:
	default:
	}
	return n, err
}

// lines returns the complete lines written so far.
func (o *output) lines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.b.String()
	s = s[:strings.LastIndexByte(s, '\n')+1]
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

type proc struct {
	id   string
	cmd  *exec.Cmd
	out  *output
	done chan struct{}
}

// freePorts returns n distinct port numbers that were free a moment ago
// for TCP and for UDP: a peer serves TCP and gossips over UDP on the same
// number.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100 {
			t.Fatal("found no port free for both TCP and UDP in 100 tries")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, ln.Close)
		port := ln.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		closers = append(closers, u.Close)
		ports = append(ports, port)
	}
	return ports
}

// TestREADMELinesMatchTheProgram runs the three peers of the README (its
// config files, on free ports), stops the leader and then a follower as
// the README says, and checks that every output line the README shows is
// one the program printed.
func TestREADMELinesMatchTheProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example: not in -short mode")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to build the example")
	}
	want := readmeLines(t)
	bin := filepath.Join(t.TempDir(), "minimal")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	// The shipped configs, moved to free ports and a fresh data_dir.
	ids := []string{"server_a", "server_b", "server_c"}
	ports := freePorts(t, len(ids))
	portOf := map[string]int{}
	for i, id := range ids {
		portOf[id] = ports[i]
	}
	dir := t.TempDir()
	changed := make(chan struct{}, 1)
	procs := map[string]*proc{}
	for _, id := range ids {
		cfg, err := qcluster.LoadConfig(id + ".json")
		if err != nil {
			t.Fatal(err)
		}
		cfg.ListenPort = portOf[id]
		cfg.DataDir = filepath.Join(dir, id)
		for i := range cfg.Peers {
			cfg.Peers[i].Port = portOf[cfg.Peers[i].Identifier]
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, id+".json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		p := &proc{id: id, out: &output{changed: changed}, done: make(chan struct{})}
		p.cmd = exec.Command(bin, path)
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			p.cmd.Wait()
			close(p.done)
		}()
		procs[id] = p
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.cmd.Process.Kill()
			<-p.done
			if t.Failed() {
				t.Logf("--- %s's output:\n%s", p.id, strings.Join(p.out.lines(), "\n"))
			}
		}
	})
	// waitLine waits until one of ps prints a line with text, and returns
	// that peer.
	waitLine := func(what, text string, ps ...*proc) *proc {
		t.Helper()
		deadline := time.NewTimer(60 * time.Second)
		defer deadline.Stop()
		for {
			for _, p := range ps {
				for _, l := range p.out.lines() {
					if strings.Contains(l, text) {
						return p
					}
				}
			}
			select {
			case <-changed:
			case <-deadline.C:
				t.Fatalf("no %s (%q) within 60s", what, text)
			}
		}
	}
	all := []*proc{procs["server_a"], procs["server_b"], procs["server_c"]}
	leader := waitLine("leader", "INFO I am the leader! ", all...)
	var others []*proc
	for _, p := range all {
		if p != leader {
			others = append(others, p)
			waitLine(p.id+" naming the leader", "INFO This is the leader identifier="+leader.id, p)
		}
	}
	// Ctrl-C on the leader; another takes over; then stop a follower.
	if err := leader.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-leader.done
	waitLine("Stopping line", "INFO Stopping "+leader.id, leader)
	next := waitLine("new leader", "INFO I am the leader! ", others...)
	last := others[0]
	if last == next {
		last = others[1]
	}
	if err := next.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-next.done
	waitLine("no leader on the last peer", "INFO No leader is elected right now", last)

	var printed []string
	for _, p := range all {
		printed = append(printed, p.out.lines()...)
	}
	for _, line := range want {
		re := linePattern(t, line)
		found := false
		for _, l := range printed {
			if re.MatchString(l) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README.md shows %q, but no peer printed such a line", line)
		}
	}
}
