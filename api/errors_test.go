package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

// TestErrorCodesBothWays: the one table maps every sentinel to its code
// and back, and a wrapped error to the code of its sentinel.
func TestErrorCodesBothWays(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range errorCodes {
		if seen[e.code] {
			t.Errorf("code %q twice in the table", e.code)
		}
		seen[e.code] = true
		code, status := CodeOf(fmt.Errorf("detail: %w", e.err))
		if code != e.code || status != e.status {
			t.Errorf("CodeOf(%v) = %s %d, want %s %d", e.err, code, status, e.code, e.status)
		}
		if back := ErrorOf(code); back != e.err {
			t.Errorf("ErrorOf(%q) = %v, want %v", code, back, e.err)
		}
	}
	if code, status := CodeOf(ErrWouldLoseQuorum); code != CodeWouldLoseQuorum || status != http.StatusConflict {
		t.Errorf("ErrWouldLoseQuorum (also an ErrConflict): %s %d", code, status)
	}
	if !errors.Is(ErrorOf(CodeWouldLoseQuorum), ErrConflict) {
		t.Error("would_lose_quorum does not read back as a conflict")
	}
	if ErrorOf(CodeTimeout) != context.DeadlineExceeded {
		t.Error("timeout does not read back as context.DeadlineExceeded")
	}
	if code, status := CodeOf(errors.New("boom")); code != CodeInternal || status != http.StatusInternalServerError {
		t.Errorf("an unknown error: %s %d", code, status)
	}
	for _, code := range []string{CodeInternal, CodeNotFound, "no_such_code", ""} {
		if err := ErrorOf(code); err != nil {
			t.Errorf("ErrorOf(%q) = %v, want nil", code, err)
		}
	}
}
