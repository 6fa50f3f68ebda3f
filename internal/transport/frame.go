package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	frameHeaderSize = 4

	helloVersion = 1
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
	if h.Version != helloVersion {
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
