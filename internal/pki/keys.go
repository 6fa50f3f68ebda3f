package pki

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// ClusterKeySize is the size of a cluster key in bytes.
const ClusterKeySize = 32

// HKDF labels ("info") of what is derived from a cluster key. Changing one
// changes what every peer derives: they are part of the protocol.
const (
	labelCASeed   = "qcluster/v1 ca ed25519 seed"
	labelCASerial = "qcluster/v1 ca serial"
	labelGossip   = "qcluster/v1 gossip aes-256 key"
)

// NewClusterKey returns a fresh cluster key, base64-encoded (standard
// encoding, with padding) as it goes into a config file.
func NewClusterKey() string {
	return base64.StdEncoding.EncodeToString(randomBytes(ClusterKeySize))
}

// NewGossipKey returns a fresh 32-byte gossip key, base64-encoded.
func NewGossipKey() string {
	return base64.StdEncoding.EncodeToString(randomBytes(32))
}

// randomBytes returns n bytes from crypto/rand (which never fails: since
// Go 1.24 a broken system generator crashes the program instead).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// ParseClusterKey decodes a base64 cluster key (standard or URL alphabet,
// padded or not) of exactly ClusterKeySize bytes.
func ParseClusterKey(s string) ([]byte, error) {
	b, err := decodeBase64(s)
	if err != nil {
		return nil, fmt.Errorf("%w: cluster key is not base64 (%v); make one with 'qcluster tls key'", ErrInvalidKey, err)
	}
	if len(b) != ClusterKeySize {
		return nil, fmt.Errorf("%w: cluster key is %d bytes, want %d; make one with 'qcluster tls key'", ErrInvalidKey, len(b), ClusterKeySize)
	}
	return b, nil
}

// ParseGossipKey decodes a base64 gossip key of 16, 24 or 32 bytes
// (AES-128, -192 or -256).
func ParseGossipKey(s string) ([]byte, error) {
	b, err := decodeBase64(s)
	if err != nil {
		return nil, fmt.Errorf("%w: gossip key is not base64 (%v); make one with 'qcluster tls key'", ErrInvalidKey, err)
	}
	switch len(b) {
	case 16, 24, 32:
		return b, nil
	}
	return nil, fmt.Errorf("%w: gossip key is %d bytes, want 16, 24 or 32; make one with 'qcluster tls key'", ErrInvalidKey, len(b))
}

// DeriveGossipKey returns the 32-byte gossip (memberlist AES-256-GCM) key
// derived from a cluster key.
func DeriveGossipKey(clusterKey []byte) []byte {
	return derive(clusterKey, labelGossip, 32)
}

// derive expands the cluster key with HKDF-SHA256 for one purpose.
func derive(clusterKey []byte, label string, n int) []byte {
	k, err := hkdf.Key(sha256.New, clusterKey, nil, label, n)
	if err != nil {
		// Only for lengths above 255*32 bytes, which no caller asks for.
		panic("pki: hkdf: " + err.Error())
	}
	return k
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("empty")
	}
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}
