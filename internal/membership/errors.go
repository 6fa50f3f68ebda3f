package membership

import "errors"

// Sentinel errors. Functions wrap them with %w and add detail, so test for
// them with errors.Is.
var (
	// ErrClosed is returned by calls made after Shutdown or Leave.
	ErrClosed = errors.New("membership: closed")

	// ErrInvalidConfig is returned by Config.Validate and New when the
	// configuration is unusable; the wrapping message names the field and
	// the fix.
	ErrInvalidConfig = errors.New("membership: invalid config")

	// ErrMetaTooLarge is returned when metadata exceeds MaxMetaSize.
	ErrMetaTooLarge = errors.New("membership: metadata too large")

	// ErrInvalidAddress is returned by Join for an address that is not
	// host:port.
	ErrInvalidAddress = errors.New("membership: invalid address")

	// ErrJoin is returned by Join when no given address could be reached.
	// The wrapped errors say why each attempt failed.
	ErrJoin = errors.New("membership: join failed")

	// ErrNotConfirmed is returned by SetMeta and Leave when the change was
	// made locally but memberlist could not confirm that its broadcast went
	// out before the context's deadline (or DefaultOpTimeout). The change
	// still spreads through gossip and push/pull; the error only means the
	// caller was not told it did.
	ErrNotConfirmed = errors.New("membership: broadcast not confirmed")

	// ErrNoEncryption is returned by the key rotation calls of a member
	// started without GossipKeys.
	ErrNoEncryption = errors.New("membership: gossip encryption is off (no GossipKeys)")

	// ErrInvalidKey is returned by the key rotation calls for a key of the
	// wrong size, a key that is not installed (UseKey), or the primary key
	// (RemoveKey).
	ErrInvalidKey = errors.New("membership: invalid gossip key")

	// ErrUnauthenticated is wrapped in the reason an inbound stream was
	// refused: not TLS, no verified certificate, a certificate of another
	// cluster, or a peer Config.Authorize refused.
	ErrUnauthenticated = errors.New("membership: peer not authenticated")
)
