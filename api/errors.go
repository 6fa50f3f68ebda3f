package api

import (
	"context"
	"errors"
	"net/http"
)

// ErrUnauthorized: the API token is missing or wrong (401 unauthorized).
// The handlers answer it themselves; clients get it back from the code.
var ErrUnauthorized = errors.New("the API token is missing or wrong")

// errorCodes is the one table of the API's errors: each sentinel error,
// the code it is sent with and the HTTP status. The server reads it one
// way (CodeOf: error to code and status), clients the other (ErrorOf: code
// to error). The first entry whose error matches wins, so an error that
// matches two (ErrWouldLoseQuorum is also an ErrConflict) comes before
// the more general one.
var errorCodes = []struct {
	err    error
	code   string
	status int
}{
	{ErrNotLeader, CodeNotLeader, http.StatusConflict},
	{ErrUnknownPeer, CodeUnknownPeer, http.StatusBadRequest},
	{ErrNoTransferee, CodeNoTransferee, http.StatusConflict},
	{ErrTransferFailed, CodeTransferFailed, http.StatusConflict},
	{ErrUnavailable, CodeUnavailable, http.StatusServiceUnavailable},
	{ErrInvalid, CodeBadRequest, http.StatusBadRequest},
	{ErrWouldLoseQuorum, CodeWouldLoseQuorum, http.StatusConflict},
	{ErrConflict, CodeConflict, http.StatusConflict},
	{ErrWrongCluster, CodeWrongCluster, http.StatusConflict},
	{ErrNoLeader, CodeNoLeader, http.StatusServiceUnavailable},
	{ErrMasterless, CodeMasterless, http.StatusConflict},
	{ErrUnauthorized, CodeUnauthorized, http.StatusUnauthorized},
	{ErrKeyNotFound, CodeKeyNotFound, http.StatusNotFound},
	{ErrSessionNotFound, CodeSessionNotFound, http.StatusNotFound},
	{ErrCompareFailed, CodeCompareFailed, http.StatusConflict},
	{ErrQuota, CodeQuota, http.StatusInsufficientStorage},
	{ErrTooLarge, CodeTooLarge, http.StatusRequestEntityTooLarge},
	{ErrUnsupported, CodeUnsupported, http.StatusNotImplemented},
	{context.DeadlineExceeded, CodeTimeout, http.StatusGatewayTimeout},
}

// CodeOf returns the code and HTTP status an error is answered with:
// those of the first sentinel of the table it matches (errors.Is), or
// "internal" and 500.
func CodeOf(err error) (code string, status int) {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code, e.status
		}
	}
	return CodeInternal, http.StatusInternalServerError
}

// ErrorOf returns the sentinel error an error code stands for (the
// reverse of CodeOf), or nil for a code that has none (such as
// "internal", "not_found" or an unknown code). Clients test answers with
// it: errors.Is(api.ErrorOf(body.Code), api.ErrConflict) holds for
// "conflict" and "would_lose_quorum".
func ErrorOf(code string) error {
	for _, e := range errorCodes {
		if e.code == code {
			return e.err
		}
	}
	return nil
}
