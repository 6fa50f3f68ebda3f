package config

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Suggest returns the name among names that word looks like a misspelling
// of, or "": the rule the config decoder uses for unknown keys (see Config:
// equal once case and '_', '-', '.' are ignored, or a small
// Damerau-Levenshtein distance away). The qcluster command uses it for
// mistyped commands and flags ("stauts": "status").
func Suggest(word string, names []string) string { return suggest(word, names, nil) }

// suggest returns the field among fields that key looks like a
// misspelling of, or "": see the Config doc for the rule. alias, if not nil,
// maps other (normalized) names for a field to it.
func suggest(key string, fields []string, alias func(string) string) string {
	nk := norm(key)
	for _, f := range fields {
		if nk == norm(f) {
			return f
		}
	}
	if alias != nil {
		if f := alias(nk); f != "" {
			return f
		}
	}
	n := utf8.RuneCountInString(nk)
	if n < 3 || n > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, f := range fields {
		nf := norm(f)
		limit := 1
		if n >= 5 && utf8.RuneCountInString(nf) >= 8 {
			limit = 2
		}
		if dist := osa(nk, nf); dist <= limit && dist < bestDist {
			best, bestDist = f, dist
		}
	}
	return best
}

// norm lower-cases s and drops '_', '-', '.' and spaces.
func norm(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '_', '-', '.', ' ':
			return -1
		}
		return unicode.ToLower(r)
	}, s)
}

// osa returns the optimal string alignment distance (Damerau-Levenshtein
// with adjacent transpositions, no substring edited twice) between a and b.
func osa(a, b string) int {
	s, t := []rune(a), []rune(b)
	prev2 := make([]int, len(t)+1)
	prev := make([]int, len(t)+1)
	cur := make([]int, len(t)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(s); i++ {
		cur[0] = i
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && s[i-1] == t[j-2] && s[i-2] == t[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(t)]
}
