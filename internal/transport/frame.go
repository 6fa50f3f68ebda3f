package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

const (
	frameHeaderSize = 4

	// helloFixedSize is version + from + to; the cluster name fills the rest.
	helloFixedSize = 1 + 8 + 8
	// maxClusterName bounds the cluster name carried in a hello.
	maxClusterName = 255
	// maxHelloSize bounds a hello frame's payload.
	maxHelloSize = helloFixedSize + maxClusterName
)

// errFrameTooLarge is returned by readFrame for a length prefix above the
// limit; the payload is neither allocated nor read.
var errFrameTooLarge = errors.New("frame too large")

// errFrameStalled is returned by frameReader.next when a started frame made
// no progress within the frame timeout.
var errFrameStalled = errors.New("frame stalled")

// errIdleDeadline is returned by frameReader.next when no frame started
// before its idleDeadline.
var errIdleDeadline = errors.New("no frame before the deadline")

// hello is the first frame of a raft stream.
type hello struct {
	Version     uint8
	From, To    uint64
	ClusterName string
}

// appendHello appends h's payload (without the frame header) to b.
func appendHello(b []byte, h hello) []byte {
	b = append(b, h.Version)
	b = binary.BigEndian.AppendUint64(b, h.From)
	b = binary.BigEndian.AppendUint64(b, h.To)
	return append(b, h.ClusterName...)
}

// appendHelloFrame appends a complete hello frame (header and payload) to b.
func appendHelloFrame(b []byte, h hello) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(helloFixedSize+len(h.ClusterName)))
	return appendHello(b, h)
}

// parseHello decodes a hello payload.
func parseHello(p []byte) (hello, error) {
	if len(p) < helloFixedSize {
		return hello{}, fmt.Errorf("hello too short (%d bytes)", len(p))
	}
	if len(p) > maxHelloSize {
		return hello{}, fmt.Errorf("hello too long (%d bytes)", len(p))
	}
	h := hello{
		Version:     p[0],
		From:        binary.BigEndian.Uint64(p[1:9]),
		To:          binary.BigEndian.Uint64(p[9:17]),
		ClusterName: string(p[helloFixedSize:]),
	}
	if h.Version != HelloVersion {
		return hello{}, fmt.Errorf("unsupported hello version %d", h.Version)
	}
	if h.From == 0 || h.To == 0 {
		return hello{}, errors.New("hello with zero node ID")
	}
	return h, nil
}

// readFrame reads one frame from r and returns its payload, reusing buf when
// it is large enough. A length above limit returns errFrameTooLarge before
// anything is allocated or read. A clean EOF before the header is io.EOF; a
// truncated frame is io.ErrUnexpectedEOF.
func readFrame(r io.Reader, buf []byte, limit int) ([]byte, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, n, limit)
	}
	if int(n) <= cap(buf) {
		buf = buf[:n]
	} else {
		buf = make([]byte, n)
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// readHello reads the hello frame that opens a raft stream.
func readHello(r io.Reader) (hello, error) {
	var buf [maxHelloSize]byte
	p, err := readFrame(r, buf[:0], maxHelloSize)
	if err != nil {
		return hello{}, err
	}
	return parseHello(p)
}

// frameGrowth is how much a frame's buffer grows at a time while its bytes
// arrive: memory follows what was received, not what a length prefix
// claims.
const frameGrowth = 64 << 10

// frameReader reads the message frames of an inbound stream. Waiting for a
// frame to start has no deadline unless idleDeadline is set; once it has
// started, every read must make progress within timeout, or next fails
// with errFrameStalled. Deadlines are only set for frames that are not
// already buffered, so the common small frame costs no timer.
type frameReader struct {
	r       *bufio.Reader
	conn    net.Conn
	limit   int
	timeout time.Duration
	// idleDeadline, if not zero, is when waiting for the next frame to
	// start gives up (errIdleDeadline): a snapshot under reassembly must
	// keep coming.
	idleDeadline time.Time
	buf          []byte // reused between frames (up to maxRetainedBuffer)
	armed        bool   // a read deadline is set on conn
}

// next returns the next frame's payload; it is valid until the next call.
func (f *frameReader) next() ([]byte, error) {
	p, err := f.read()
	if f.armed {
		f.armed = false
		if derr := f.conn.SetReadDeadline(time.Time{}); derr != nil && err == nil {
			err = derr
		}
	}
	return p, err
}

// arm pushes the read deadline timeout from now.
func (f *frameReader) arm() error {
	f.armed = true
	return f.conn.SetReadDeadline(time.Now().Add(f.timeout))
}

// stalled turns a deadline error into errFrameStalled.
func (f *frameReader) stalled(err error) error {
	var ne net.Error
	if f.armed && errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: no progress for %v", errFrameStalled, f.timeout)
	}
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (f *frameReader) read() ([]byte, error) {
	if f.r.Buffered() == 0 {
		idle := !f.idleDeadline.IsZero()
		if idle {
			f.armed = true
			if err := f.conn.SetReadDeadline(f.idleDeadline); err != nil {
				return nil, err
			}
		}
		if _, err := f.r.Peek(1); err != nil {
			var ne net.Error
			if idle && errors.As(err, &ne) && ne.Timeout() {
				return nil, errIdleDeadline
			}
			return nil, err // idle stream ended: io.EOF, closed, ...
		}
	}
	if f.r.Buffered() < frameHeaderSize {
		if err := f.arm(); err != nil {
			return nil, err
		}
	}
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
		return nil, f.stalled(err)
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if uint64(n) > uint64(f.limit) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, n, f.limit)
	}
	if f.r.Buffered() >= n {
		// Fast path: the whole frame is here.
		buf := f.buf[:0]
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		_, err := io.ReadFull(f.r, buf)
		return buf, err
	}
	buf := f.buf[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(n, max(2*cap(buf), frameGrowth)))
			copy(nb, buf)
			buf = nb
		}
		if err := f.arm(); err != nil {
			return nil, err
		}
		k, err := f.r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err != nil && len(buf) < n {
			return nil, f.stalled(err)
		}
	}
	return buf, nil
}

// recycle keeps p's buffer for the next frame unless it is large.
func (f *frameReader) recycle(p []byte) {
	if cap(p) <= maxRetainedBuffer {
		f.buf = p[:0]
	} else {
		f.buf = nil
	}
}
