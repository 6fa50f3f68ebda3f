package membership

import (
	"bytes"
	"compress/lzw"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Watching memberlist's gossip.
//
// memberlist tells its EventDelegate about joins, metadata updates and
// departures, but not about suspicion, and its NotifyLeave cannot tell a
// member that left from one that failed (the Node it passes never carries
// the state; see hashicorp/memberlist#266 and #321). Nor does any exported
// call report a member's state or incarnation. What memberlist does expose
// — to its Transport — is every message it sends and receives, in a wire
// format that is part of its protocol (message type numbers are "part of
// the protocol itself" and only ever appended to), so it is stable across
// versions.
//
// The Transport therefore shows every packet to an observer that decodes
// the three state messages — alive, suspect, dead — and the registry uses
// them as follows:
//
//   - Outbound suspect/alive/dead messages are memberlist re-gossiping a
//     state change it has just applied (it only re-broadcasts what it
//     accepted), so they mirror its own view: an outbound suspect for an
//     alive member marks it suspect; an alive with a higher incarnation
//     than the suspicion clears it (the member refuted). A suspicion is
//     thus reported within a gossip interval of memberlist adopting it.
//   - Inbound suspect and alive messages are what memberlist is about to
//     apply, and are used the same way, with the same incarnation rules
//     memberlist applies (a suspicion needs an incarnation at least the
//     member's, a refutation a higher one; an alive must come from the
//     member's known address). They matter because memberlist's broadcast
//     queue can lose a message (hashicorp/memberlist#263), so a member's
//     own re-gossip of a change is not guaranteed.
//   - Inbound dead messages whose sender is the dead member itself are a
//     graceful leave notice. They are seen before memberlist processes them,
//     so when NotifyLeave follows, the registry reports Left instead of
//     Failed. A leave learnt only through a push/pull state exchange is
//     reported Failed at first and then Left once memberlist re-gossips it.
//   - As a backstop, a member reported suspect for longer than memberlist's
//     longest suspicion timeout while memberlist still lists it has
//     refuted the suspicion unseen, and is reported recovered.
//
// Decoding is best effort: anything not understood is ignored, and
// memberlist's own processing never depends on it. What can be missed is a
// short suspicion (reported neither as Suspect nor Recovered) or, rarely, a
// Suspect before a Failed.

// memberlist message types (net.go in memberlist).
const (
	wireSuspect  = 3
	wireAlive    = 4
	wireDead     = 5
	wireCompound = 7
	wireCompress = 9
	wireHasCRC   = 12
	wireHasLabel = 244

	wireMaxDepth        = 4
	wireMaxDecompressed = 1 << 20
)

// gossipKind is the kind of a decoded state message.
type gossipKind uint8

const (
	gossipAlive gossipKind = iota + 1
	gossipSuspect
	gossipDead
)

// gossipMsg is one decoded state message. From is empty for alive
// messages, addr (the member's host:port) for the others.
type gossipMsg struct {
	kind gossipKind
	node string
	from string
	addr string
	inc  uint32
}

var errWireLabel = errors.New("membership: packet label does not match")

// wireState mirrors the fields of memberlist's alive, suspect and dead
// messages that matter here; msgpack ignores the others.
type wireState struct {
	Incarnation uint32
	Node        string
	From        string // suspect, dead
	Addr        []byte // alive
	Port        uint16 // alive
}

// wireCompressed mirrors memberlist's compress message.
type wireCompressed struct {
	Algo uint8
	Buf  []byte
}

var wireHandle = &codec.MsgpackHandle{}

// decodeGossip calls fn for every alive, suspect and dead message in the
// packet buf, which carries label's header when label is not empty (a
// packet with another label is rejected, as memberlist would).
func decodeGossip(buf []byte, label string, fn func(gossipMsg)) error {
	_, err := decodeSealed(buf, label, nil, fn)
	return err
}

// decodeSealed is decodeGossip for a member whose gossip is encrypted with
// one of ciphers (primary first; nil when gossip is not encrypted): it
// decrypts the packet as memberlist does, and returns the index of the key
// that did (-1 without encryption). A packet that no key decrypts returns
// errWireDecrypt: memberlist drops it too.
func decodeSealed(buf []byte, label string, ciphers gossipCiphers, fn func(gossipMsg)) (int, error) {
	if len(buf) > 0 && buf[0] == wireHasLabel {
		if len(buf) < 2 || int(buf[1]) == 0 || len(buf) < 2+int(buf[1]) {
			return -1, errors.New("membership: truncated packet label")
		}
		if string(buf[2:2+int(buf[1])]) != label {
			return -1, errWireLabel
		}
		buf = buf[2+int(buf[1]):]
	} else if label != "" {
		return -1, errWireLabel
	}
	idx := -1
	if ciphers != nil {
		var err error
		if buf, idx, err = ciphers.open(buf, label); err != nil {
			return -1, err
		}
	}
	return idx, walkGossip(buf, 0, fn)
}

// Encrypted packets (memberlist's security.go): a version byte (0: AES-GCM
// with PKCS #7 padding, 1: without), a 12-byte nonce, and the sealed
// message with its 16-byte tag; the packet label is the additional data.
const (
	wireNonceSize  = 12
	wireTagSize    = 16
	wireMaxVersion = 1
)

var errWireDecrypt = errors.New("membership: packet does not decrypt with any gossip key")

// gossipCiphers are the AEADs of a keyring's keys, primary first.
type gossipCiphers []cipher.AEAD

// newGossipCiphers returns the AEADs for keys.
func newGossipCiphers(keys [][]byte) (gossipCiphers, error) {
	out := make(gossipCiphers, 0, len(keys))
	for _, k := range keys {
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		out = append(out, gcm)
	}
	return out, nil
}

// open decrypts an encrypted packet body with the first key that fits.
func (cs gossipCiphers) open(buf []byte, label string) ([]byte, int, error) {
	if len(buf) < 1+wireNonceSize+wireTagSize || buf[0] > wireMaxVersion {
		return nil, -1, errWireDecrypt
	}
	vsn, nonce, sealed := buf[0], buf[1:1+wireNonceSize], buf[1+wireNonceSize:]
	for i, c := range cs {
		plain, err := c.Open(nil, nonce, sealed, []byte(label))
		if err != nil {
			continue
		}
		if vsn == 0 { // PKCS #7 padding
			if len(plain) == 0 || int(plain[len(plain)-1]) > len(plain) {
				return nil, -1, errWireDecrypt
			}
			plain = plain[:len(plain)-int(plain[len(plain)-1])]
		}
		return plain, i, nil
	}
	return nil, -1, errWireDecrypt
}

// walkGossip decodes one message, recursing into wrappers.
func walkGossip(buf []byte, depth int, fn func(gossipMsg)) error {
	if len(buf) == 0 {
		return nil
	}
	if depth > wireMaxDepth {
		return errors.New("membership: gossip messages nested too deeply")
	}
	body := buf[1:]
	switch buf[0] {
	case wireHasCRC:
		if len(body) < 4 {
			return errors.New("membership: truncated checksum")
		}
		if crc32.ChecksumIEEE(body[4:]) != binary.BigEndian.Uint32(body) {
			return errors.New("membership: bad checksum")
		}
		return walkGossip(body[4:], depth+1, fn)
	case wireCompress:
		var c wireCompressed
		if err := codec.NewDecoderBytes(body, wireHandle).Decode(&c); err != nil {
			return err
		}
		if c.Algo != 0 {
			return fmt.Errorf("membership: unknown compression %d", c.Algo)
		}
		r := lzw.NewReader(bytes.NewReader(c.Buf), lzw.LSB, 8)
		plain, err := io.ReadAll(io.LimitReader(r, wireMaxDecompressed))
		r.Close()
		if err != nil {
			return err
		}
		return walkGossip(plain, depth+1, fn)
	case wireCompound:
		if len(body) < 1 {
			return errors.New("membership: truncated compound message")
		}
		n := int(body[0])
		body = body[1:]
		if len(body) < 2*n {
			return errors.New("membership: truncated compound lengths")
		}
		lens, parts := body[:2*n], body[2*n:]
		var firstErr error
		for i := range n {
			l := int(binary.BigEndian.Uint16(lens[2*i:]))
			if l > len(parts) {
				return errors.New("membership: truncated compound part")
			}
			if err := walkGossip(parts[:l], depth+1, fn); err != nil && firstErr == nil {
				firstErr = err
			}
			parts = parts[l:]
		}
		return firstErr
	case wireAlive, wireSuspect, wireDead:
		var s wireState
		if err := codec.NewDecoderBytes(body, wireHandle).Decode(&s); err != nil {
			return err
		}
		if s.Node == "" {
			return errors.New("membership: state message without a node")
		}
		m := gossipMsg{node: s.Node, from: s.From, inc: s.Incarnation}
		switch buf[0] {
		case wireAlive:
			m.kind, m.from = gossipAlive, ""
			if ip, ok := netip.AddrFromSlice(s.Addr); ok {
				m.addr = netip.AddrPortFrom(ip.Unmap(), s.Port).String()
			}
		case wireSuspect:
			m.kind = gossipSuspect
		default:
			m.kind = gossipDead
		}
		fn(m)
	}
	return nil
}
