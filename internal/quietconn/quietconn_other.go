//go:build !linux

package quietconn

import "net"

// Wrap returns c: only Linux connections are wrapped.
func Wrap(c net.Conn) net.Conn { return c }
