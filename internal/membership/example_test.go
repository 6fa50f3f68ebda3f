package membership_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/transport"
)

// start runs a member on 127.0.0.1 with an OS-chosen port.
func start(name, meta string) (*membership.Membership, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	mux := transport.NewMux(ln, transport.MuxOptions{})
	cfg := membership.DefaultConfig()
	cfg.Name = name
	cfg.Mux = mux
	cfg.ClusterName = "example"
	cfg.Profile = membership.ProfileLocal
	cfg.Meta = []byte(meta)
	m, err := membership.New(cfg) // before mux.Serve
	if err != nil {
		panic(err) // a real program would retry if the UDP port is taken
	}
	go mux.Serve()
	return m, func() { m.Shutdown(); mux.Close() }
}

func Example() {
	a, stopA := start("server_a", `{"server_port":8001}`)
	defer stopA()
	b, stopB := start("server_b", `{"server_port":8002}`)
	defer stopB()

	ctx := context.Background()
	if _, err := b.Join(ctx, []string{a.Local().Addr()}); err != nil {
		panic(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(a.Members()) < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // poll until a has heard of b
	}
	for _, m := range a.Members() {
		fmt.Println(m.Name, m.State, string(m.Meta))
	}
	owner, _ := a.Owner("customer-42")
	other, _ := b.Owner("customer-42")
	fmt.Println("both agree on the owner:", owner.Name == other.Name)

	// Output:
	// server_a alive {"server_port":8001}
	// server_b alive {"server_port":8002}
	// both agree on the owner: true
}
