package membership

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// How metadata travels.
//
// memberlist gossips each member's "node meta", at most
// memberlist.MetaMaxSize (512) bytes, inside its alive messages. This
// package puts an envelope there:
//
//	'q' | version (1) | kind | body
//
// where the kind byte's top two bits (envelopeCheckMask) are the member's
// health-check state (SetCheck), and kind 0 ("inline") has the metadata itself as body (so metadata of
// up to InlineMetaSize bytes spreads with the gossip, with no extra round
// trip), and kind 1 ("reference") has uvarint(size) | SHA-256(metadata).
// A member that sees a reference it has no data for fetches the metadata
// from its owner: it dials the owner's port with MetaPreamble and sends
//
//	version (1) | len(cluster) (1 byte) | cluster | len(name) (1 byte) | name | SHA-256 (32 bytes)
//
// and the owner answers
//
//	status (1 byte) | [status OK: len(data) (4 bytes BE) | data]
//
// with its current metadata. The fetcher keeps it only if its hash is
// the one the gossip announced (a newer one is announced shortly after and
// fetched again), so what every member reports is always data whose hash
// its owner gossiped. Because memberlist re-gossips node meta on every
// change and in every push/pull, the envelope is always fresh; only the
// (rare) large metadata costs one stream per member per change.

const (
	envelopeMagic     = 'q'
	envelopeVersion   = 1
	envelopeHeaderLen = 3

	envelopeInline     = 0
	envelopeRef        = 1
	envelopeCheckShift = 6    // the Check, in the kind byte's top bits
	envelopeCheckMask  = 0xc0 // those bits

	metaProtoVersion = 1
)

// Fetch response statuses.
const (
	metaStatusOK          = 0
	metaStatusBadRequest  = 1
	metaStatusWrongGroup  = 2 // cluster name differs
	metaStatusWrongMember = 3 // the request names another member
	metaStatusBusy        = 4
)

var errBadEnvelope = errors.New("membership: malformed metadata envelope (not a QCluster member?)")

// envelope is a parsed node meta.
type envelope struct {
	inline bool
	data   []byte   // inline: the metadata (owned by the envelope)
	check  Check    // the member's health-check state
	size   int      // reference: the metadata's length
	hash   [32]byte // reference: its SHA-256
}

// encodeEnvelope returns the node meta announcing data.
func encodeEnvelope(data []byte, check Check) []byte {
	flags := byte(check) << envelopeCheckShift & envelopeCheckMask
	if len(data) <= InlineMetaSize {
		b := make([]byte, 0, envelopeHeaderLen+len(data))
		b = append(b, envelopeMagic, envelopeVersion, envelopeInline|flags)
		return append(b, data...)
	}
	h := sha256.Sum256(data)
	b := make([]byte, 0, envelopeHeaderLen+binary.MaxVarintLen64+len(h))
	b = append(b, envelopeMagic, envelopeVersion, envelopeRef|flags)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, h[:]...)
}

// parseEnvelope parses a node meta written by encodeEnvelope.
func parseEnvelope(b []byte) (envelope, error) {
	if len(b) < envelopeHeaderLen || b[0] != envelopeMagic || b[1] != envelopeVersion {
		return envelope{}, errBadEnvelope
	}
	body := b[envelopeHeaderLen:]
	check := Check(b[2] >> envelopeCheckShift)
	if check > CheckFailing {
		return envelope{}, errBadEnvelope
	}
	switch b[2] &^ envelopeCheckMask {
	case envelopeInline:
		if len(body) > InlineMetaSize {
			return envelope{}, errBadEnvelope
		}
		return envelope{inline: true, data: bytes.Clone(body), check: check}, nil
	case envelopeRef:
		size, n := binary.Uvarint(body)
		if n <= 0 || size <= InlineMetaSize || size > MaxMetaSize || len(body)-n != sha256.Size {
			return envelope{}, errBadEnvelope
		}
		e := envelope{size: int(size), check: check}
		copy(e.hash[:], body[n:])
		return e, nil
	}
	return envelope{}, errBadEnvelope
}

// metaRequest is a fetch request as read by the owner.
type metaRequest struct {
	cluster string
	name    string
	hash    [32]byte
}

// writeMetaRequest writes a fetch request (after the preamble).
func writeMetaRequest(w io.Writer, cluster, name string, hash [32]byte) error {
	if len(cluster) > 255 || len(name) > 255 {
		return errors.New("membership: cluster or member name longer than 255 bytes")
	}
	b := make([]byte, 0, 3+len(cluster)+len(name)+len(hash))
	b = append(b, metaProtoVersion, byte(len(cluster)))
	b = append(b, cluster...)
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = append(b, hash[:]...)
	_, err := w.Write(b)
	return err
}

// readMetaRequest reads a fetch request. It returns an error, and a status
// to answer with, for anything malformed.
func readMetaRequest(r io.Reader) (metaRequest, byte, error) {
	var req metaRequest
	br := bufio.NewReaderSize(r, 64)
	v, err := br.ReadByte()
	if err != nil {
		return req, metaStatusBadRequest, err
	}
	if v != metaProtoVersion {
		return req, metaStatusBadRequest, fmt.Errorf("membership: metadata request version %d, want %d", v, metaProtoVersion)
	}
	readStr := func() (string, error) {
		n, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		b := make([]byte, n)
		_, err = io.ReadFull(br, b)
		return string(b), err
	}
	if req.cluster, err = readStr(); err != nil {
		return req, metaStatusBadRequest, err
	}
	if req.name, err = readStr(); err != nil {
		return req, metaStatusBadRequest, err
	}
	if _, err := io.ReadFull(br, req.hash[:]); err != nil {
		return req, metaStatusBadRequest, err
	}
	return req, metaStatusOK, nil
}

// writeMetaResponse writes a fetch response; data is sent only with
// metaStatusOK.
func writeMetaResponse(w io.Writer, status byte, data []byte) error {
	if status != metaStatusOK {
		_, err := w.Write([]byte{status})
		return err
	}
	b := make([]byte, 5, 5+len(data))
	b[0] = status
	binary.BigEndian.PutUint32(b[1:], uint32(len(data)))
	_, err := w.Write(append(b, data...))
	return err
}

// readMetaResponse reads a fetch response and returns the metadata, which
// is at most MaxMetaSize bytes.
func readMetaResponse(r io.Reader) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return nil, err
	}
	switch hdr[0] {
	case metaStatusOK:
	case metaStatusWrongGroup:
		return nil, errors.New("membership: metadata owner is in another cluster")
	case metaStatusWrongMember:
		return nil, errors.New("membership: metadata owner has another name")
	case metaStatusBusy:
		return nil, errors.New("membership: metadata owner is busy")
	default:
		return nil, fmt.Errorf("membership: metadata request refused (status %d)", hdr[0])
	}
	if _, err := io.ReadFull(r, hdr[1:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxMetaSize {
		return nil, fmt.Errorf("membership: metadata response of %d bytes exceeds %d", n, MaxMetaSize)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, err
	}
	return data, nil
}
