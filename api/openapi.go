package api

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3.1 description of this API (openapi.json
// in this package's directory), served at GET /v1/openapi.json.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3.1 document (JSON) that describes every
// endpoint of this API, its requests, answers and error codes: the document
// GET /v1/openapi.json serves. The slice is a copy.
func OpenAPI() []byte { return append([]byte(nil), openAPIDocument...) }

func (h *handler) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDocument)
}
