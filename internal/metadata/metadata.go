// Package metadata is how a member's metadata (a JSON object) is checked,
// normalized and decoded: Encode checks that it can be shared (JSON, at most
// MaxSize bytes), Normalize returns it as every peer decodes it, and Cache
// decodes what gossip carries, once per change of each member's metadata.
// Its errors wrap sdkerr.ErrInvalidMetadata (the SDK's ErrInvalidMetadata).
package metadata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

// MaxSize bounds a member's metadata encoded as JSON (the SDK's
// MaxMetadataSize).
const MaxSize = membership.MaxMetaSize

// Encode checks that metadata can be shared: JSON-encodable and at most
// MaxSize bytes encoded. It returns the encoding.
func Encode(md map[string]any) ([]byte, error) {
	b, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("%w: metadata cannot be encoded as JSON: %w", sdkerr.ErrInvalidMetadata, err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: metadata is %d bytes encoded as JSON; the limit is %d (64 KiB)", sdkerr.ErrInvalidMetadata, len(b), MaxSize)
	}
	return b, nil
}

// Normalize returns md as every peer decodes it from JSON (numbers as
// float64), so the local copy equals the replicated one.
func Normalize(md map[string]any) (map[string]any, error) {
	b, err := Encode(md)
	if err != nil {
		return nil, err
	}
	if md == nil {
		return nil, nil
	}
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("%w: %w", sdkerr.ErrInvalidMetadata, err)
	}
	return out, nil
}

// Cache decodes members' gossip metadata, keeping each member's last
// result so that reading the members does not decode it on every call.
// The zero Cache is ready to use; it is safe for concurrent use.
type Cache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	raw []byte
	md  map[string]any
}

// Decode decodes the gossip metadata raw of the member name (a JSON object;
// nil when raw is empty). Metadata that is not a JSON object decodes to
// {"_invalid": why}. The map is shared and must not be modified.
func (c *Cache) Decode(name string, raw []byte) map[string]any {
	if len(raw) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[name]; ok && string(e.raw) == string(raw) {
		return e.md
	}
	var md map[string]any
	if err := json.Unmarshal(raw, &md); err != nil {
		md = map[string]any{"_invalid": fmt.Sprintf("metadata is not a JSON object: %v", err)}
	}
	if c.entries == nil {
		c.entries = make(map[string]cacheEntry)
	}
	c.entries[name] = cacheEntry{raw: raw, md: md}
	return md
}
