package transport

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/quietconn"
)

// isQuiet reports whether c, or a connection it wraps, is a quiet one.
func isQuiet(c net.Conn) bool {
	for {
		switch v := c.(type) {
		case *quietconn.Conn:
			return true
		case *replayConn:
			c = v.Conn
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return false
		}
	}
}

// Both ends of a raft stream read and write with raw system calls on
// Linux (package quietconn): the connections the Mux accepts and the ones
// the default Dial opens.
func TestStreamConnsAreQuiet(t *testing.T) {
	m := NewMux(listenLocal(t), MuxOptions{})
	got := make(chan net.Conn, 1)
	m.Handle("QTEST", func(c net.Conn) {
		got <- c
		c.Close()
	})
	served := make(chan error, 1)
	go func() { served <- m.Serve() }()
	defer func() {
		m.Close()
		<-served
	}()

	tr := New(Config{LocalID: 1, ClusterName: "test", Deliver: new(inbox).deliver})
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tr.cfg.Dial(ctx, m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !isQuiet(c) {
		t.Errorf("the default Dial's connection is a %T, not a quiet one", c)
	}
	if _, err := c.Write([]byte("QTEST")); err != nil {
		t.Fatal(err)
	}
	select {
	case sc := <-got:
		if !isQuiet(sc) {
			t.Errorf("the Mux's accepted connection is a %T, not a quiet one", sc)
		}
	case <-ctx.Done():
		t.Fatal("the Mux never handed the connection over")
	}
}
