package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is the first byte of every KV log entry (the registry's is 'R').
const Kind byte = 'K'

// Size limits. A key is at most MaxKeySize bytes, a value at most
// MaxValueSize bytes.
const (
	MaxKeySize   = 1024
	MaxValueSize = 1 << 20
)

// InternalPrefix starts the keys QCluster reserves for itself (locks:
// InternalPrefix + "lock/" + name). Applications cannot write them through
// the SDK; List shows them only for a prefix that starts with it.
const InternalPrefix = "\x00"

// Errors of the decoders and of Apply. They are wrapped with %w: test with
// errors.Is.
var (
	// ErrNotKV: a normal entry is not a KV entry (empty, or another Kind).
	ErrNotKV = errors.New("kv: not a KV entry")
	// ErrMalformed: the bytes do not decode.
	ErrMalformed = errors.New("kv: malformed")
	// ErrUnknownOp: a KV entry names an operation this version does not
	// know.
	ErrUnknownOp = errors.New("kv: unknown operation")
	// ErrInvalidKey: a key is empty, holds a NUL byte other than the
	// leading one of the internal key space, or is not valid UTF-8.
	ErrInvalidKey = errors.New("kv: invalid key")
	// ErrTooLarge: a key is over MaxKeySize or a value over MaxValueSize.
	ErrTooLarge = errors.New("kv: too large")
	// ErrQuota: the put would take the store over its quota (Result.Err).
	ErrQuota = errors.New("kv: quota exceeded")
	// ErrCompacted: the events asked for are older than the history kept
	// (wrapped in a *CompactedError that says the oldest revision kept).
	ErrCompacted = errors.New("kv: revision compacted")
	// ErrNotFound: a delete names a key that does not exist (Result.Err).
	ErrNotFound = errors.New("kv: key not found")
	// ErrOwnerRemoved: a put binds a key to a member that a configuration
	// change already removed (Result.Err); the key would never go away.
	ErrOwnerRemoved = errors.New("kv: owner removed from the cluster")
	// ErrStaleTerm: an op fenced to a term (Op.Term) came in an entry of
	// another term (Result.Err); nothing changed.
	ErrStaleTerm = errors.New("kv: op proposed in another term")
)

// CompactedError says that events from a revision are no longer kept;
// Oldest is the oldest revision Since can still start from. errors.Is(err,
// ErrCompacted) holds.
type CompactedError struct {
	Oldest uint64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("kv: revision compacted: oldest revision kept is %d", e.Oldest)
}

// Unwrap returns ErrCompacted.
func (e *CompactedError) Unwrap() error { return ErrCompacted }

// OpType is what an Op does.
type OpType uint8

// Operations.
const (
	// OpPut sets a key's value.
	OpPut OpType = 1
	// OpDelete deletes a key.
	OpDelete OpType = 2
	// OpSetQuota sets the store's quota (Op.Quota bytes of keys plus
	// values) on every peer that applies it: the quota travels in the log
	// so that every peer refuses the same puts. It carries no key. (Its
	// number leaves room for other operations below it.)
	OpSetQuota OpType = 0x20
)

// String returns "put" or "delete".
func (t OpType) String() string {
	switch t {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpSetQuota:
		return "set-quota"
	}
	if t.isSession() {
		return t.sessionString()
	}
	return fmt.Sprintf("op(%d)", uint8(t))
}

// Op is one KV operation in a normal log entry.
type Op struct {
	Type  OpType
	Key   string
	Value []byte // OpPut only; nil when empty
	// Compare: the op applies only if the key's mod revision equals
	// ModRevision (0: only if the key is absent).
	Compare     bool
	ModRevision uint64
	// Owner (OpPut only): bind the key to this member's node ID
	// (ephemeral: deleted when a configuration change removes it).
	Owner uint64
	// ReqID is chosen by the proposer and echoed in the Result; 0 means
	// nobody waits.
	ReqID uint64
	// Term, when not 0, fences the op to the leader's term it was proposed
	// in: it applies only from an entry of that term, and is refused
	// (ErrStaleTerm) from any other. A proposer that has applied an entry
	// of a later term without seeing its op's result then knows that the
	// op never applies (log terms only grow), and may propose it again.
	Term uint64

	// Session (OpPut): bind the key to this session (see session.go): it
	// is deleted when the session is revoked or expires; the key's Owner
	// becomes the session's owner (Owner must be 0). OpKeepAlive,
	// OpRevoke: the session they renew or end.
	Session uint64
	// TTL (OpGrant): the session's time to live, whole milliseconds.
	TTL time.Duration
	// IfRenewed (OpRevoke): revoke only if the session was last renewed
	// (or granted) at this entry index; 0: unconditionally.
	IfRenewed uint64
	// Quota (OpSetQuota only, > 0): the store's new quota in bytes.
	Quota int64
}

// flags of the encoding.
const (
	flagCompare = 1 << iota
	flagSession // a put bound to a session: a uvarint session ID follows the value
	flagAll     = flagCompare | flagSession
)

// CheckKey returns an error (ErrInvalidKey, ErrTooLarge) unless key may be
// stored: not empty, at most MaxKeySize bytes, valid UTF-8, and without a
// NUL byte other than the leading one of the internal key space.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("%w: key of %d bytes (at most %d)", ErrTooLarge, len(key), MaxKeySize)
	}
	rest := strings.TrimPrefix(key, InternalPrefix)
	if rest == "" || strings.IndexByte(rest, 0) >= 0 {
		return fmt.Errorf("%w: %q holds a NUL byte", ErrInvalidKey, key)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: %q is not UTF-8", ErrInvalidKey, key)
	}
	return nil
}

// Check returns an error unless op is an operation that EncodeOp accepts.
func (op Op) Check() error {
	if op.Quota != 0 && op.Type != OpSetQuota {
		return fmt.Errorf("%w: a quota outside a quota change", ErrMalformed)
	}
	if op.Type.isSession() {
		return op.checkSessionOp()
	}
	if op.TTL != 0 || op.IfRenewed != 0 {
		return fmt.Errorf("%w: a %v carries no TTL or renewal condition", ErrMalformed, op.Type)
	}
	if op.Session != 0 && (op.Type != OpPut || op.Owner != 0) {
		return fmt.Errorf("%w: only a put without an owner is bound to a session", ErrMalformed)
	}
	if op.Type == OpSetQuota {
		if op.Key != "" || len(op.Value) != 0 || op.Owner != 0 || op.Compare || op.ModRevision != 0 {
			return fmt.Errorf("%w: a quota change carries no key, value, owner or compare", ErrMalformed)
		}
		if op.Quota <= 0 {
			return fmt.Errorf("%w: quota %d (must be > 0)", ErrMalformed, op.Quota)
		}
		return nil
	}
	if err := CheckKey(op.Key); err != nil {
		return err
	}
	switch op.Type {
	case OpPut:
		if len(op.Value) > MaxValueSize {
			return fmt.Errorf("%w: value of %d bytes (at most %d)", ErrTooLarge, len(op.Value), MaxValueSize)
		}
	case OpDelete:
		if len(op.Value) != 0 || op.Owner != 0 {
			return fmt.Errorf("%w: a delete carries no value or owner", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: %v", ErrUnknownOp, op.Type)
	}
	if !op.Compare && op.ModRevision != 0 {
		return fmt.Errorf("%w: a mod revision without compare", ErrMalformed)
	}
	return nil
}

// EncodeOp encodes op as a normal entry's data: Kind, the op type, flags,
// then ReqID, ModRevision, Owner, Term, the key and the value as uvarints
// and length-prefixed bytes; a quota change (OpSetQuota): Kind, the type,
// flags (0), then ReqID, Quota and Term as uvarints. It refuses an op that
// Check refuses.
func EncodeOp(op Op) ([]byte, error) {
	if err := op.Check(); err != nil {
		return nil, err
	}
	if op.Type.isSession() {
		return encodeSessionOp(op), nil
	}
	b := make([]byte, 0, 3+5*binary.MaxVarintLen64+len(op.Key)+len(op.Value))
	var flags byte
	if op.Compare {
		flags |= flagCompare
	}
	if op.Session != 0 {
		flags |= flagSession
	}
	b = append(b, Kind, byte(op.Type), flags)
	b = binary.AppendUvarint(b, op.ReqID)
	if op.Type == OpSetQuota {
		b = binary.AppendUvarint(b, uint64(op.Quota))
		return binary.AppendUvarint(b, op.Term), nil
	}
	b = binary.AppendUvarint(b, op.ModRevision)
	b = binary.AppendUvarint(b, op.Owner)
	b = binary.AppendUvarint(b, op.Term)
	b = binary.AppendUvarint(b, uint64(len(op.Key)))
	b = append(b, op.Key...)
	b = binary.AppendUvarint(b, uint64(len(op.Value)))
	b = append(b, op.Value...)
	if op.Session != 0 {
		b = binary.AppendUvarint(b, op.Session)
	}
	return b, nil
}

// DecodeOp decodes a normal entry's data as a KV operation this version
// knows, checked as EncodeOp checks it. Hostile input gives an error,
// never a panic.
func DecodeOp(data []byte) (Op, error) {
	if len(data) == 0 || data[0] != Kind {
		return Op{}, ErrNotKV
	}
	if len(data) < 3 {
		return Op{}, fmt.Errorf("%w: short entry", ErrMalformed)
	}
	op := Op{Type: OpType(data[1])}
	if op.Type.isSession() {
		return decodeSessionOp(data)
	}
	if op.Type != OpPut && op.Type != OpDelete && op.Type != OpSetQuota {
		return Op{}, fmt.Errorf("%w: %v", ErrUnknownOp, op.Type)
	}
	flags := data[2]
	if flags&^flagAll != 0 {
		return Op{}, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	op.Compare = flags&flagCompare != 0
	d := decoder{b: data[3:]}
	op.ReqID = d.uvarint()
	if op.Type == OpSetQuota {
		if flags != 0 {
			return Op{}, fmt.Errorf("%w: flags %#x on a quota change", ErrMalformed, flags)
		}
		q := d.uvarint()
		if q > math.MaxInt64 {
			return Op{}, fmt.Errorf("%w: quota %d", ErrMalformed, q)
		}
		op.Quota, op.Term = int64(q), d.uvarint()
		return op.finish(d)
	}
	op.ModRevision = d.uvarint()
	op.Owner = d.uvarint()
	op.Term = d.uvarint()
	op.Key = string(d.bytes(MaxKeySize))
	if v := d.bytes(MaxValueSize); len(v) > 0 {
		op.Value = v
	}
	if flags&flagSession != 0 {
		if op.Session = d.uvarint(); op.Session == 0 && d.err == nil {
			return Op{}, fmt.Errorf("%w: session 0", ErrMalformed)
		}
	}
	return op.finish(d)
}

// finish ends DecodeOp: the decoder's error, trailing bytes, Check.
func (op Op) finish(d decoder) (Op, error) {
	if d.err != nil {
		return Op{}, d.err
	}
	if len(d.b) != 0 {
		return Op{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	if err := op.Check(); err != nil {
		return Op{}, err
	}
	return op, nil
}

// decoder reads uvarints and length-prefixed bytes; the first error
// sticks and later reads return zeros.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint", ErrMalformed)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed byte string of at most limit bytes; the
// result is a copy.
func (d *decoder) bytes(limit int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) {
		d.err = fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, n, limit)
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: %d bytes announced, %d left", ErrMalformed, n, len(d.b))
		return nil
	}
	out := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return out
}
