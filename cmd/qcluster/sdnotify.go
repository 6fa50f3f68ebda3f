package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/qcluster/qcluster"
)

// sdNotify sends state (such as "READY=1") to the service manager when the
// agent runs under systemd with Type=notify: one datagram to the Unix
// socket named by $NOTIFY_SOCKET (a path, or "@name" for an abstract
// socket). Without $NOTIFY_SOCKET it does nothing and returns nil.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	switch {
	case strings.HasPrefix(addr, "@"):
		addr = "\x00" + addr[1:]
	case strings.HasPrefix(addr, "/"):
	default:
		return fmt.Errorf("NOTIFY_SOCKET %q: only Unix socket paths and @abstract names are supported", addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	return nil
}

// sdStatus is the STATUS= line systemctl status shows for a peer's state.
func sdStatus(st qcluster.State) string {
	switch {
	case st.IsLeader:
		return fmt.Sprintf("STATUS=leader (term %d)", st.Term)
	case st.HasLeader:
		return fmt.Sprintf("STATUS=%s, leader %s (term %d)", st.Role, st.Leader.Identifier, st.Term)
	default:
		return fmt.Sprintf("STATUS=%s, no leader known (term %d)", st.Role, st.Term)
	}
}
