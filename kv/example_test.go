package kv_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/kv"
)

// startSinglePeer starts a cluster of one and waits until it leads.
func startSinglePeer() (*qcluster.Cluster, func()) {
	dir, err := os.MkdirTemp("", "qcluster-kv-example")
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	cfg := qcluster.DefaultConfig()
	cfg.Identifier = "server_a"
	cfg.Listener = ln
	cfg.DataDir = dir
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := qcluster.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.WaitForLeader(ctx); err != nil {
		log.Fatal(err)
	}
	return c, func() { c.Close(); os.RemoveAll(dir) }
}

// Put and Get on the replicated store, and a compare-and-swap that loses
// a race.
func ExampleKV_Put() {
	c, done := startSinglePeer()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store := c.KV()

	if _, err := store.Put(ctx, "config/color", []byte("blue"), kv.IfAbsent()); err != nil {
		log.Fatal(err)
	}
	got, err := store.Get(ctx, "config/color") // linearizable
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Key, string(got.Value), "version", got.Version)

	// Change it only if nobody did since we read it.
	if _, err := store.Put(ctx, "config/color", []byte("green"), kv.IfModRevision(got.ModRevision)); err != nil {
		log.Fatal(err)
	}
	// The same compare again fails: the key moved on.
	res, err := store.Put(ctx, "config/color", []byte("red"), kv.IfModRevision(got.ModRevision))
	fmt.Println(errors.Is(err, kv.ErrCompareFailed), string(res.KV.Value))
	// Output:
	// config/color blue version 1
	// true green
}

// Watch from a revision: every change after it, in order.
func ExampleKV_Watch() {
	c, done := startSinglePeer()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store := c.KV()

	first, err := store.Put(ctx, "jobs/1", []byte("queued"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.Delete(ctx, "jobs/1"); err != nil {
		log.Fatal(err)
	}
	events, err := store.Watch(ctx, "jobs/", first.Revision)
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		ev := <-events
		fmt.Println(ev.Type, ev.KV.Key)
	}
	// Output:
	// put jobs/1
	// delete jobs/1
}

// A named lock: one holder at a time in the whole cluster, with a fencing
// token that grows with every holding.
func ExampleKV_Lock() {
	c, done := startSinglePeer()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	lock, err := c.KV().Lock(ctx, "nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	first := lock.Token()
	select {
	case <-lock.Lost():
		fmt.Println("lost: stop working")
	default:
		fmt.Println("held: do the work, passing the token to what it writes")
	}
	if err := lock.Unlock(ctx); err != nil {
		log.Fatal(err)
	}

	again, err := c.KV().Lock(ctx, "nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	defer again.Unlock(ctx)
	fmt.Println("next token is greater:", again.Token() > first)
	// Output:
	// held: do the work, passing the token to what it writes
	// next token is greater: true
}

// A session with a TTL, kept alive by the SDK: a key and a lock bound to
// it go when it ends (Close here; in production also when this process
// dies and stops renewing it).
func ExampleKV_NewSession() {
	c, done := startSinglePeer()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store := c.KV()

	s, err := store.NewSession(ctx, 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.Put(ctx, "services/api/node-1", []byte("10.0.0.4:8080"), kv.InSession(s)); err != nil {
		log.Fatal(err)
	}
	lock, err := store.Lock(ctx, "compactor", kv.WithSession(s))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("lock held:", lock.Token() > 0)

	if err := s.Close(ctx); err != nil { // revoke: the key and the lock go
		log.Fatal(err)
	}
	<-lock.Lost()
	_, err = store.Get(ctx, "services/api/node-1")
	fmt.Println(errors.Is(err, kv.ErrKeyNotFound))
	_, err = store.NewSession(ctx, 10*time.Millisecond)
	fmt.Println(errors.Is(err, kv.ErrInvalidTTL))
	// Output:
	// lock held: true
	// true
	// true
}
