package kv

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DedupeWindow is how many operations with a ReqID the store remembers
// the outcome of (the most recent ones): a proposal delivered twice within
// it applies once. It is part of the state (the same on every peer), not
// an option.
const DedupeWindow = 4096

// outcome is what the store remembers of an applied op with a ReqID.
type outcome struct {
	index, rev uint64
	succeeded  bool
	err        uint8 // errCodes index; 0: nil
}

// errCodes are the errors an applied op's Result may carry, by their code
// in the snapshot (0: none).
var errCodes = []error{nil, ErrQuota, ErrNotFound, ErrOwnerRemoved, ErrStaleTerm}

// errUnknownOutcome stands for an error errCodes does not list.
const errUnknownOutcome = math.MaxUint8

func errCode(err error) uint8 {
	for i, e := range errCodes {
		if e == err {
			return uint8(i)
		}
	}
	return errUnknownOutcome
}

func (o outcome) result(reqID uint64) Result {
	r := Result{ReqID: reqID, Index: o.index, Revision: o.rev, Succeeded: o.succeeded, Duplicate: true}
	switch {
	case int(o.err) < len(errCodes):
		r.Err = errCodes[o.err]
	default:
		r.Err = fmt.Errorf("%w: a duplicate of an op that failed", ErrMalformed)
	}
	return r
}

// remember records r's outcome under its ReqID (none for 0), forgetting
// the oldest beyond DedupeWindow (callers hold mu).
func (s *Store) remember(r Result) {
	if r.ReqID == 0 {
		return
	}
	s.dedupe[r.ReqID] = outcome{index: r.Index, rev: r.Revision, succeeded: r.Succeeded, err: errCode(r.Err)}
	s.dedupeOrder = append(s.dedupeOrder, r.ReqID)
	if len(s.dedupeOrder) > DedupeWindow {
		delete(s.dedupe, s.dedupeOrder[0])
		s.dedupeOrder[0] = 0
		s.dedupeOrder = s.dedupeOrder[1:]
	}
	if cap(s.dedupeOrder) > 4*DedupeWindow && len(s.dedupeOrder) < cap(s.dedupeOrder)/2 {
		s.dedupeOrder = append([]uint64(nil), s.dedupeOrder...)
	}
}

// appendTail appends what follows the keys in a Snapshot: the quota in
// force (a zig-zag varint), then the remembered outcomes in apply order
// (count, then ReqID, index, revision, flags, error code each).
func (s *Store) appendTail(b []byte) []byte {
	b = binary.AppendVarint(b, s.quota)
	b = binary.AppendUvarint(b, uint64(len(s.dedupeOrder)))
	for _, id := range s.dedupeOrder {
		o := s.dedupe[id]
		var flags uint64
		if o.succeeded {
			flags = 1
		}
		b = appendUvarints(b, id, o.index, o.rev, flags, uint64(o.err))
	}
	return b
}

// tail is what decodeTail read.
type tail struct {
	quota int64
	set   bool // the snapshot had a tail (older ones do not)
	dedup map[uint64]outcome
	order []uint64
}

// decodeTail reads appendTail's encoding, checked against the snapshot's
// applied index and revision. A snapshot that ends after its keys
// (written before the tail existed) has none: set is false.
func decodeTail(d *decoder, applied, rev uint64) (tail, error) {
	t := tail{dedup: map[uint64]outcome{}}
	if d.err != nil || len(d.b) == 0 {
		return t, nil
	}
	q, n := binary.Varint(d.b)
	if n <= 0 || q == 0 {
		return t, fmt.Errorf("%w: snapshot: bad quota", ErrMalformed)
	}
	d.b = d.b[n:]
	t.quota, t.set = q, true
	count := d.uvarint()
	if d.err == nil && count > DedupeWindow {
		return t, fmt.Errorf("%w: snapshot: %d request outcomes (at most %d)", ErrMalformed, count, DedupeWindow)
	}
	var last uint64
	for i := uint64(0); i < count && d.err == nil; i++ {
		id, index, r, flags, code := d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint()
		if d.err != nil {
			break
		}
		if _, dup := t.dedup[id]; dup || id == 0 || index <= last || index > applied || r > rev || flags > 1 ||
			(code >= uint64(len(errCodes)) && code != errUnknownOutcome) {
			return t, fmt.Errorf("%w: snapshot: impossible request outcome %d", ErrMalformed, id)
		}
		t.dedup[id] = outcome{index: index, rev: r, succeeded: flags == 1, err: uint8(code)}
		last = index
		t.order = append(t.order, id)
	}
	return t, d.err
}
