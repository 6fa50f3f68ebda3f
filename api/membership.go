package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the names in a JoinRequest, as in a peer's config.
const (
	maxIdentifierLen = 255
	maxHostLen       = 253
)

// join serves POST /v1/join: it checks the request, then asks the Backend
// to add the member.
func (h *handler) join(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if !decodeBody(w, r, &req, true, `{"identifier": "server_d", "host": "10.0.0.4", "port": 7001}`) {
		return
	}
	if msg := checkJoin(req); msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return
	}
	res, err := h.b.Join(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if res.Peers == nil {
		res.Peers = []Member{}
	}
	WriteJSON(w, http.StatusOK, res)
}

// checkJoin describes what is wrong with a JoinRequest, or returns "".
func checkJoin(req JoinRequest) string {
	if msg := nameProblem(req.Identifier, maxIdentifierLen, false); msg != "" {
		return "identifier: " + msg + `; give the new member's unique name, such as "server_d"`
	}
	if msg := nameProblem(req.Host, maxHostLen, false); msg != "" {
		return "host: " + msg + `; give the host name or IP address other peers reach the new member at, such as "10.0.0.4"`
	}
	if strings.Contains(req.Host, "://") {
		return fmt.Sprintf(`host: %q looks like a URL; give only the host name or IP address, such as "10.0.0.4"`, req.Host)
	}
	if req.Port < 1 || req.Port > 65535 {
		return fmt.Sprintf("port: %d is not a port; give the new member's listen_port, 1-65535", req.Port)
	}
	if req.ClusterName != "" {
		if msg := nameProblem(req.ClusterName, maxIdentifierLen, true); msg != "" {
			return "cluster_name: " + msg
		}
	}
	return ""
}

// nameProblem describes what is wrong with an identifier or host name, or
// returns "".
func nameProblem(s string, maxLen int, allowSpace bool) string {
	switch {
	case s == "":
		return "missing"
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case len(s) > maxLen:
		return fmt.Sprintf("is %d bytes long, more than the %d allowed", len(s), maxLen)
	case !allowSpace && strings.IndexFunc(s, unicode.IsSpace) >= 0:
		return fmt.Sprintf("%q contains whitespace", s)
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0:
		return fmt.Sprintf("%q contains a control or non-printable character", s)
	}
	return ""
}

// setMetadata serves PUT /v1/self/metadata.
func (h *handler) setMetadata(w http.ResponseWriter, r *http.Request) {
	const example = `{"metadata": {"server_port": 8004}}`
	var req struct {
		Metadata json.RawMessage `json:"metadata"`
	}
	if !decodeBody(w, r, &req, true, example) {
		return
	}
	raw := bytes.TrimSpace(req.Metadata)
	if len(raw) == 0 || raw[0] != '{' {
		what := "missing"
		if len(raw) > 0 {
			what = "not a JSON object: " + truncate(string(raw), 40)
		}
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "metadata: "+what+"; send "+example+" ({\"metadata\": {}} clears it)")
		return
	}
	var md map[string]any
	if err := json.Unmarshal(raw, &md); err != nil {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "metadata: "+err.Error())
		return
	}
	m, err := h.b.SetMetadata(r.Context(), md)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, m)
}

// setHealth serves PUT /v1/self/health.
func (h *handler) setHealth(w http.ResponseWriter, r *http.Request) {
	const example = `{"status": "passing", "output": "ok"}`
	hs, ok := h.b.(HealthSetter)
	if !ok {
		WriteError(w, http.StatusNotFound, CodeNotFound, "this peer takes no health reports")
		return
	}
	var req HealthReport
	if !decodeBody(w, r, &req, true, example) {
		return
	}
	st, err := hs.SetHealth(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, st)
}

// truncate shortens s to at most n bytes for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// removePeer serves DELETE /v1/peers/{identifier}.
func (h *handler) removePeer(w http.ResponseWriter, r *http.Request) {
	var req struct{}
	if !decodeBody(w, r, &req, false, "{}") {
		return
	}
	id := r.PathValue("identifier")
	err := h.b.RemovePeer(r.Context(), id)
	switch {
	case err == nil:
		WriteJSON(w, http.StatusOK, RemoveResult{Removed: id})
	case r.Context().Err() != nil:
		// the client is gone
	case errors.Is(err, ErrUnknownPeer):
		msg := err.Error()
		if err == ErrUnknownPeer {
			msg = fmt.Sprintf("no member has the identifier %q", id)
		}
		WriteError(w, http.StatusNotFound, CodeUnknownPeer, msg+"; GET /v1/peers lists the members")
	default:
		h.backendError(w, err)
	}
}

// leave serves POST /v1/self/leave: the answering peer leaves the cluster
// and then stops, so the connection is closed after the answer.
func (h *handler) leave(w http.ResponseWriter, r *http.Request) {
	var req struct{}
	if !decodeBody(w, r, &req, false, "{}") {
		return
	}
	id := h.b.Status().Identifier
	if err := h.b.Leave(r.Context()); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Connection", "close")
	WriteJSON(w, http.StatusOK, LeaveResult{Left: id})
}
