package qcluster_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/qcluster/qcluster"
)

// Put and Get on the replicated store, and a compare-and-swap that loses
// a race.
func ExampleKV_Put() {
	c, done := startSinglePeer()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store := c.KV()

	if _, err := store.Put(ctx, "config/color", []byte("blue"), qcluster.IfAbsent()); err != nil {
		log.Fatal(err)
	}
	kv, err := store.Get(ctx, "config/color") // linearizable
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(kv.Key, string(kv.Value), "version", kv.Version)

	// Change it only if nobody did since we read it.
	if _, err := store.Put(ctx, "config/color", []byte("green"), qcluster.IfModRevision(kv.ModRevision)); err != nil {
		log.Fatal(err)
	}
	// The same compare again fails: the key moved on.
	res, err := store.Put(ctx, "config/color", []byte("red"), qcluster.IfModRevision(kv.ModRevision))
	fmt.Println(errors.Is(err, qcluster.ErrCompareFailed), string(res.KV.Value))
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
func ExampleCluster_Lock() {
	c, done := startSinglePeer()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	lock, err := c.Lock(ctx, "nightly-report")
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

	again, err := c.Lock(ctx, "nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	defer again.Unlock(ctx)
	fmt.Println("next token is greater:", again.Token() > first)
	// Output:
	// held: do the work, passing the token to what it writes
	// next token is greater: true
}
