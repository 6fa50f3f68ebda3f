package quietconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Wrap returns c with quiet reads and writes when it is a *net.TCPConn,
// and c itself otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	q := &Conn{TCPConn: tc, rc: rc}
	q.r.sys, q.w.sys = syscall.SYS_READ, syscall.SYS_WRITE
	q.r.fn, q.w.fn = q.r.call, q.w.all // bound once: Read and Write allocate nothing
	return q
}

// Conn is a TCP connection whose Read and Write are raw system calls. Its
// other methods (deadlines, Close, CloseWrite, SetLinger, ...) are the
// TCP connection's.
type Conn struct {
	*net.TCPConn
	rc   syscall.RawConn
	r, w rawOp
}

// rawOp is one direction's system call and its arguments and results,
// which fn (given to the RawConn) reads and sets; mu holds them for one
// Read or Write at a time.
type rawOp struct {
	mu    sync.Mutex
	sys   uintptr
	b     []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// call makes the system call once on b[o.n:] (a read: data, the end of
// the stream or an error): it reports false when the socket is not ready
// (the RawConn then waits in the poller), and true with o.n advanced or
// o.errno set otherwise.
func (o *rawOp) call(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(o.sys, fd, uintptr(unsafe.Pointer(&o.b[o.n])), uintptr(len(o.b)-o.n))
		switch e {
		case 0:
			o.n += int(r)
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			o.errno = e
			return true
		}
	}
}

// all is a write: system calls until all of b is written or one fails.
func (o *rawOp) all(fd uintptr) bool {
	for o.n < len(o.b) && o.errno == 0 {
		if !o.call(fd) {
			return false
		}
	}
	return true
}

// do runs o on b through run (the RawConn's Read or Write) and returns
// the count and the error, named op.
func (c *Conn) do(o *rawOp, run func(func(uintptr) bool) error, op string, b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b, o.n, o.errno = b, 0, 0
	err := run(o.fn)
	n, errno := o.n, o.errno
	o.b = nil
	switch {
	case err != nil:
		return n, c.opError(op, err)
	case errno != 0:
		return n, c.opError(op, os.NewSyscallError(op, errno))
	}
	return n, nil
}

// NetConn returns the TCP connection underneath.
func (c *Conn) NetConn() net.Conn { return c.TCPConn }

// Read reads like net.TCPConn.Read: io.EOF at the end of the stream, a
// *net.OpError otherwise (the deadline's, the closed connection's, or the
// system call's error).
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := c.do(&c.r, c.rc.Read, "read", b)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return n, err
}

// Write writes like net.TCPConn.Write: all of b, or the count written and
// the error that stopped it.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return c.do(&c.w, c.rc.Write, "write", b)
}

// opError names op in err, as net.TCPConn's errors do; RawConn's own
// errors (a deadline, a closed connection) say "raw-read" or "raw-write".
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
		return oe
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
