package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/api/apitest"
	"github.com/qcluster/qcluster/client"
)

// startKVPeer serves the API of a fake peer with an in-memory KV store
// (api/apitest), for the examples: a real cluster in leader mode answers
// the same.
func startKVPeer() (addr string, stop func()) {
	self := &api.Peer{Identifier: "server_a", Host: "127.0.0.1", Port: 7001}
	b := apitest.New(api.Status{Identifier: "server_a", Role: "leader", IsLeader: true, Leader: self, Mode: api.ModeLeader, Joined: true},
		[]api.Member{{Peer: *self, Voter: true, IsLeader: true, IsSelf: true}}, 1)
	srv := httptest.NewServer(api.NewHandler(b))
	return srv.URL, func() {
		b.Stop()
		srv.Close()
	}
}

func ExampleKV() {
	addr, stop := startKVPeer()
	defer stop()
	ctx := context.Background()
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	kv := c.KV()
	if _, err := kv.Put(ctx, "config/db", []byte("postgres://db1"), client.IfAbsent()); err != nil {
		log.Fatal(err)
	}
	got, err := kv.Get(ctx, "config/db")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s = %s (mod revision %d)\n", got.Key, got.Value, got.ModRevision)

	// Compare-and-swap: only if nobody changed it since it was read.
	_, err = kv.Put(ctx, "config/db", []byte("postgres://db2"), client.IfModRevision(got.ModRevision))
	fmt.Println("first swap:", err)
	_, err = kv.Put(ctx, "config/db", []byte("postgres://db3"), client.IfModRevision(got.ModRevision))
	fmt.Println("second swap lost:", errors.Is(err, client.ErrCompareFailed))

	if _, err := kv.Get(ctx, "config/cache"); errors.Is(err, client.ErrKeyNotFound) {
		fmt.Println("config/cache: not found")
	}
	// Output:
	// config/db = postgres://db1 (mod revision 1)
	// first swap: <nil>
	// second swap lost: true
	// config/cache: not found
}

func ExampleKV_Watch() {
	addr, stop := startKVPeer()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	kv := c.KV()
	list, err := kv.List(ctx, "jobs/")
	if err != nil {
		log.Fatal(err)
	}
	// Every change after what was read: none is lost, even when the
	// connection breaks.
	events, err := kv.Watch(ctx, "jobs/", list.Revision+1)
	if err != nil {
		log.Fatal(err)
	}
	kv.Put(ctx, "jobs/1", []byte("queued"))
	kv.Put(ctx, "jobs/1", []byte("done"))
	kv.Delete(ctx, "jobs/1")
	for range 3 {
		ev := <-events
		if ev.Err != nil { // compacted, or refused: the watch ends
			log.Fatal(ev.Err)
		}
		fmt.Println(ev.Revision, ev.Type, ev.KV.Key, string(ev.KV.Value))
	}
	// Output:
	// 1 put jobs/1 queued
	// 2 put jobs/1 done
	// 3 delete jobs/1
}

func ExampleClient_Lock() {
	addr, stop := startKVPeer()
	defer stop()
	ctx := context.Background()
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	l, err := c.Lock(ctx, "nightly-backup") // waits until it is free
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("held with fencing token", l.Token())
	select {
	case <-l.Lost():
		fmt.Println("lost: stop the backup")
	default:
		fmt.Println("backing up...")
	}
	if err := l.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// held with fencing token 1
	// backing up...
}
