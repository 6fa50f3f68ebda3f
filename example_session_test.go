package qcluster_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/qcluster/qcluster"
)

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
	if _, err := store.Put(ctx, "services/api/node-1", []byte("10.0.0.4:8080"), qcluster.InSession(s)); err != nil {
		log.Fatal(err)
	}
	lock, err := c.Lock(ctx, "compactor", qcluster.WithSession(s))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("lock held:", lock.Token() > 0)

	if err := s.Close(ctx); err != nil { // revoke: the key and the lock go
		log.Fatal(err)
	}
	<-lock.Lost()
	_, err = store.Get(ctx, "services/api/node-1")
	fmt.Println(errors.Is(err, qcluster.ErrKeyNotFound))
	_, err = store.NewSession(ctx, 10*time.Millisecond)
	fmt.Println(errors.Is(err, qcluster.ErrInvalidTTL))
	// Output:
	// lock held: true
	// true
	// true
}
