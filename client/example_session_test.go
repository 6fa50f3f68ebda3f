package client_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/qcluster/qcluster/client"
)

// A session that the client keeps alive, a key registered in it and a
// lock bound to it: both go when the session ends (Close, or no renewal
// for its TTL because this process died).
func ExampleKV_NewSession() {
	ctx := context.Background()
	c, err := client.NewWithOptions(client.Options{Token: os.Getenv("QCLUSTER_TOKEN")}, "localhost:7001", "localhost:7002")
	if err != nil {
		log.Fatal(err)
	}
	s, err := c.KV().NewSession(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	if _, err := c.KV().Put(ctx, "services/api/10.0.0.4", []byte("up"), client.InSession(s)); err != nil {
		log.Fatal(err)
	}
	l, err := c.Lock(ctx, "backup", client.WithSession(s))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Unlock(context.Background())
	select {
	case <-l.Lost(): // the session ended: stop the work
	case <-s.Done():
	}
}
