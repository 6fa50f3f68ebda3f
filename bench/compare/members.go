package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/qcluster/qcluster/internal/proccluster"
)

// view is one member's answer to a status request: the leader it names
// and whether it says it leads.
type view struct {
	// Leader is the name of the member this one names as the leader; ""
	// when it knows none.
	Leader string
	// IsLeader: this member says it is the leader (for QCluster: it holds
	// its lease, IsLeader() is true).
	IsLeader bool
	// Term is the member's raft term.
	Term uint64
}

// member is one process of a measured cluster, whatever the system: the
// harness only kills, freezes, restarts and asks it for its view.
type member interface {
	// Name is the member's name, the one the others use for it in a view.
	Name() string
	// PID is the process ID of its current process, 0 if none.
	PID() int
	// View asks the member for its view.
	View(ctx context.Context) (view, error)
	// Kill sends SIGKILL, waits until the process has exited and returns
	// the instant just before the signal.
	Kill() (time.Time, error)
	// Signal sends sig to the running process.
	Signal(sig os.Signal) error
	// Restart starts the member again with its data and waits until it
	// answers View.
	Restart(ctx context.Context) error
	// LogTail returns the last n lines of its output.
	LogTail(n int) string
}

// cluster is a running set of members.
type cluster interface {
	Members() []member
	// Close kills every process that still runs.
	Close()
}

// qcCluster adapts a proccluster.Cluster of QCluster agents.
type qcCluster struct {
	c  *proccluster.Cluster
	ms []member
}

func newQCCluster(c *proccluster.Cluster) *qcCluster {
	q := &qcCluster{c: c}
	for _, p := range c.Peers {
		q.ms = append(q.ms, qcMember{p})
	}
	return q
}

func (q *qcCluster) Members() []member { return q.ms }
func (q *qcCluster) Close()            { q.c.Close() }

// qcMember is a QCluster agent; its view is GET /v1/status.
type qcMember struct{ p *proccluster.Peer }

func (m qcMember) Name() string                      { return m.p.ID }
func (m qcMember) PID() int                          { return m.p.PID() }
func (m qcMember) Kill() (time.Time, error)          { return m.p.Kill() }
func (m qcMember) Signal(sig os.Signal) error        { return m.p.Signal(sig) }
func (m qcMember) Restart(ctx context.Context) error { return m.p.Restart(ctx) }
func (m qcMember) LogTail(n int) string              { return m.p.LogTail(n) }

func (m qcMember) View(ctx context.Context) (view, error) {
	st, err := m.p.Status(ctx)
	if err != nil {
		return view{}, err
	}
	v := view{IsLeader: st.IsLeader, Term: st.Term}
	if st.Leader != nil {
		v.Leader = st.Leader.Identifier
	}
	return v, nil
}

// errExited: a member's process exited while it was expected to run.
var errExited = errors.New("process exited")

// procMember is a member that is a plain process (etcd, the hraft node):
// the harness starts it with a fixed command line and asks it for its view
// with the view function.
type procMember struct {
	name    string
	args    []string // program and arguments
	env     []string // nil: the harness's environment
	logPath string
	view    func(ctx context.Context) (view, error)
	// startTimeout bounds Restart's wait for the first answer.
	startTimeout time.Duration

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited and been reaped
}

func (m *procMember) Name() string                           { return m.name }
func (m *procMember) View(ctx context.Context) (view, error) { return m.view(ctx) }

// start starts the process without waiting for it to answer.
func (m *procMember) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done != nil {
		select {
		case <-m.done:
		default:
			return fmt.Errorf("%s is already running", m.name)
		}
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(m.args[0], m.args[1:]...)
	cmd.Env = m.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = proccluster.SysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.cmd, m.done = cmd, done
	return nil
}

// current returns the latest process and its done channel, or nils.
func (m *procMember) current() (*exec.Cmd, chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd, m.done
}

func (m *procMember) running() (*exec.Cmd, chan struct{}, error) {
	cmd, done := m.current()
	if cmd == nil {
		return nil, nil, fmt.Errorf("%s: %w", m.name, errExited)
	}
	select {
	case <-done:
		return nil, nil, fmt.Errorf("%s: %w", m.name, errExited)
	default:
		return cmd, done, nil
	}
}

func (m *procMember) PID() int {
	cmd, _ := m.current()
	if cmd == nil {
		return 0
	}
	return cmd.Process.Pid
}

func (m *procMember) Kill() (time.Time, error) {
	cmd, done, err := m.running()
	if err != nil {
		return time.Time{}, err
	}
	at := time.Now()
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return at, fmt.Errorf("kill %s: %w", m.name, err)
	}
	<-done
	return at, nil
}

func (m *procMember) Signal(sig os.Signal) error {
	cmd, _, err := m.running()
	if err != nil {
		return err
	}
	return cmd.Process.Signal(sig)
}

// Restart starts the process and waits until it answers.
func (m *procMember) Restart(ctx context.Context) error {
	if err := m.start(); err != nil {
		return err
	}
	if err := m.waitReady(ctx); err != nil {
		m.kill()
		return err
	}
	return nil
}

// waitReady waits until the member answers View, or fails when its
// process exits first.
func (m *procMember) waitReady(ctx context.Context) error {
	_, done := m.current()
	ctx, cancel := context.WithTimeout(ctx, m.startTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := m.view(ctx); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited right after it started; its last output:\n%s", m.name, m.LogTail(8))
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer within %v: %w; its last output:\n%s", m.name, m.startTimeout, ctx.Err(), m.LogTail(8))
		case <-tick.C:
		}
	}
}

// kill kills the process if it runs and waits for it.
func (m *procMember) kill() {
	if cmd, done, err := m.running(); err == nil {
		_ = cmd.Process.Kill()
		<-done
	}
}

func (m *procMember) LogTail(n int) string { return logTail(m.logPath, n) }

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// procCluster is a cluster of procMembers.
type procCluster struct{ ms []*procMember }

func (c *procCluster) Members() []member {
	out := make([]member, len(c.ms))
	for i, m := range c.ms {
		out[i] = m
	}
	return out
}

func (c *procCluster) Close() {
	for _, m := range c.ms {
		m.kill()
	}
}

// startAll starts every member and waits until each answers; on error
// nothing is left running.
func (c *procCluster) startAll(ctx context.Context) error {
	for _, m := range c.ms {
		if err := m.start(); err != nil {
			c.Close()
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.ms))
	for i, m := range c.ms {
		wg.Go(func() { errs[i] = m.waitReady(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return err
	}
	return nil
}
