package membership

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func liveSet(names ...string) []liveMember {
	slices.Sort(names)
	out := make([]liveMember, len(names))
	for i, n := range names {
		out[i] = liveMember{hash: nameHash(n), m: &Member{Name: n}}
	}
	return out
}

func owners(live []liveMember, keys int) []string {
	out := make([]string, keys)
	for k := range keys {
		out[k] = live[ownerOf(live, fmt.Sprintf("key-%d", k))].m.Name
	}
	return out
}

func TestOwnerOnlyMovesTheFailedMembersKeys(t *testing.T) {
	const keys = 10000
	var all []string
	for i := range 20 {
		all = append(all, fmt.Sprintf("peer-%d", i))
	}
	before := owners(liveSet(all...), keys)
	for _, gone := range all {
		rest := slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == gone })
		after := owners(liveSet(rest...), keys)
		for k := range keys {
			if before[k] != gone && after[k] != before[k] {
				t.Fatalf("removing %s moved key %d from %s to %s", gone, k, before[k], after[k])
			}
			if after[k] == gone {
				t.Fatalf("key %d still owned by removed %s", k, gone)
			}
		}
	}
	// And adding a member only takes keys, to itself.
	more := owners(liveSet(append(slices.Clone(all), "peer-new")...), keys)
	for k := range keys {
		if more[k] != before[k] && more[k] != "peer-new" {
			t.Fatalf("adding a member moved key %d from %s to %s", k, before[k], more[k])
		}
	}
}

func TestOwnerBalance(t *testing.T) {
	const keys, n = 100000, 20
	var all []string
	for i := range n {
		all = append(all, fmt.Sprintf("server_%c", 'a'+i))
	}
	count := map[string]int{}
	for _, o := range owners(liveSet(all...), keys) {
		count[o]++
	}
	mean := float64(keys) / n
	for name, c := range count {
		// Binomial sd is about sqrt(5000) = 71; allow 6 sd.
		if math.Abs(float64(c)-mean) > 6*math.Sqrt(mean) {
			t.Errorf("%s owns %d keys, mean %.0f", name, c, mean)
		}
	}
	if len(count) != n {
		t.Errorf("%d of %d members own keys", len(count), n)
	}
}

func TestOwnerIsStable(t *testing.T) {
	// The hash is part of the contract between versions: peers running
	// different builds must agree. These values must never change.
	live := liveSet("server_a", "server_b", "server_c")
	got := []string{}
	for _, k := range []string{"", "a", "customer-42", "server_a", "ключ"} {
		got = append(got, live[ownerOf(live, k)].m.Name)
	}
	want := []string{"server_c", "server_c", "server_c", "server_c", "server_b"}
	if !slices.Equal(got, want) {
		t.Errorf("owners = %q, want %q", got, want)
	}
	if ownerOf(nil, "k") != -1 {
		t.Error("ownerOf(empty) != -1")
	}
}

func BenchmarkOwner(b *testing.B) {
	var all []string
	for i := range 100 {
		all = append(all, fmt.Sprintf("peer-%d", i))
	}
	live := liveSet(all...)
	for i := 0; b.Loop(); i++ {
		ownerOf(live, "customer-42")
	}
}
