package membership

import "hash/fnv"

// Rendezvous (highest-random-weight) hashing.
//
// The owner of a key is the live member whose weight for that key is the
// highest, where weight(key, member) = mix64(hash(key) XOR hash(name)),
// hash is FNV-1a 64 followed by mix64 (names are first XORed with a
// constant, so that a key equal to a member's name is not special), and mix64 is MurmurHash3's 64-bit
// finalizer (a bijection with full avalanche). The weight depends only on
// the key and the member's name, so every member computes the same owner
// from the same member set, and when a member fails only the keys it owned
// move (each to the member with the next-highest weight for it); keys owned
// by the survivors stay put. Ties (probability 2^-64) go to the smaller
// name. The hash functions are fixed: changing them would move keys
// between versions.

// keyHash returns the hash of a key.
func keyHash(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return mix64(h.Sum64())
}

// nameHash returns the hash of a member name.
func nameHash(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return mix64(h.Sum64() ^ 0x9e3779b97f4a7c15)
}

// weight returns a member's weight for a key.
func weight(key, name uint64) uint64 { return mix64(key ^ name) }

// mix64 is MurmurHash3's fmix64.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// ownerOf returns the index in live of the owner of key, or -1 if live is
// empty.
func ownerOf(live []liveMember, key string) int {
	kh := keyHash(key)
	best, bestW := -1, uint64(0)
	for i, lm := range live {
		w := weight(kh, lm.hash)
		if best < 0 || w > bestW || (w == bestW && lm.m.Name < live[best].m.Name) {
			best, bestW = i, w
		}
	}
	return best
}
