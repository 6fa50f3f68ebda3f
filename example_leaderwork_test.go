package qcluster_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qcluster/qcluster"
)

// Leader-only work: fn runs each time this peer gains leadership, and its
// context ends the moment the lease is lost.
func ExampleCluster_RunWhileLeader() {
	c, done := startSinglePeer()
	defer done()
	ctx, cancel := context.WithCancel(context.Background())
	err := c.RunWhileLeader(ctx, func(leaderCtx context.Context) error {
		term, _ := qcluster.LeaderTerm(leaderCtx) // a fencing token
		deadline, _ := leaderCtx.Deadline()       // the lease's current end
		fmt.Println("leading; term > 0:", term > 0, "; lease ends within a second:", time.Until(deadline) < time.Second)
		cancel() // the example is over: RunWhileLeader ends leaderCtx and returns
		<-leaderCtx.Done()
		return nil
	})
	fmt.Println(err)
	// Output:
	// leading; term > 0: true ; lease ends within a second: true
	// context canceled
}

// leaderCtx's deadline moves forward while the lease is renewed, so a
// context.WithTimeout derived from it may not fire at its own deadline:
// give a job its timeout with a timer of its own.
func ExampleCluster_RunWhileLeader_timeout() {
	c, done := startSinglePeer()
	defer done()
	errJobTimeout := errors.New("job took too long")
	err := c.RunWhileLeader(context.Background(), func(leaderCtx context.Context) error {
		jobCtx, cancelJob := context.WithCancelCause(leaderCtx)
		defer cancelJob(nil)
		timer := time.AfterFunc(50*time.Millisecond, func() { cancelJob(errJobTimeout) })
		defer timer.Stop()
		<-jobCtx.Done() // a job that would run for ever
		return context.Cause(jobCtx)
	})
	fmt.Println(err)
	// Output: job took too long
}

// The client-go style: callbacks for gains, losses and new leaders.
func ExampleCluster_OnLeadership() {
	c, done := startSinglePeer()
	defer done()
	started := make(chan struct{})
	stop := c.OnLeadership(qcluster.LeaderCallbacks{
		OnStartedLeading: func(ctx context.Context) {
			fmt.Println("started leading")
			close(started)
			<-ctx.Done() // the work, until the lease is lost or stop is called
		},
		OnStoppedLeading: func() { fmt.Println("stopped leading") },
		OnNewLeader:      func(leader qcluster.Peer) { fmt.Println("the leader is", leader.Identifier) },
	})
	<-started
	stop() // cancels the work's ctx and waits for the callbacks
	// Output:
	// the leader is server_a
	// started leading
	// stopped leading
}
