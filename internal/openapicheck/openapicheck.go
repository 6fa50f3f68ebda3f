// Package openapicheck checks real HTTP answers of the QCluster API against
// its OpenAPI document (api/openapi.json), for tests: the path and method
// must be an operation of the document, the status one of its responses,
// the content type the one it names, the headers it declares present, and
// a JSON body must validate against the response's schema.
//
// Objects are checked strictly: a property the document does not describe
// is an error, so a field added to a response type without its description
// is caught (the document itself stays open to new fields, as the API
// promises clients).
//
//	spec, err := openapicheck.New(api.OpenAPI())
//	err = spec.Check("GET", "/v1/peers/server_b", resp.StatusCode, resp.Header, body)
package openapicheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// docURL is the URL the document is known by inside the schema compiler.
const docURL = "https://qcluster.invalid/openapi.json"

// Spec is a parsed OpenAPI document. It is safe for concurrent use.
type Spec struct {
	doc   map[string]any
	paths map[string]map[string]any // path template -> method -> operation
	rest  map[string]bool           // path templates whose last parameter takes the rest of the path

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema // JSON pointer -> compiled
}

// New parses an OpenAPI 3.1 document.
func New(document []byte) (*Spec, error) {
	var doc map[string]any
	if err := json.Unmarshal(document, &doc); err != nil {
		return nil, fmt.Errorf("openapicheck: the document is not JSON: %w", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1") {
		return nil, fmt.Errorf("openapicheck: openapi %q, want 3.1.x (JSON Schema 2020-12 schemas)", v)
	}
	s := &Spec{doc: doc, paths: map[string]map[string]any{}, rest: map[string]bool{}, schemas: map[string]*jsonschema.Schema{}}
	paths, _ := doc["paths"].(map[string]any)
	for p, item := range paths {
		ops := map[string]any{}
		if w, _ := item.(map[string]any)[Wildcard].(bool); w {
			s.rest[p] = true
		}
		for m, op := range item.(map[string]any) {
			switch m {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				ops[strings.ToUpper(m)] = op
			}
		}
		s.paths[p] = ops
	}
	// The compiler gets a strict copy: every described object refuses
	// properties it does not describe.
	var strict any
	if err := json.Unmarshal(document, &strict); err != nil {
		return nil, err
	}
	closeObjects(strict)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(mustJSON(strict)))
	if err != nil {
		return nil, err
	}
	s.compiler = jsonschema.NewCompiler()
	s.compiler.DefaultDraft(jsonschema.Draft2020)
	s.compiler.AssertFormat()
	if err := s.compiler.AddResource(docURL, inst); err != nil {
		return nil, fmt.Errorf("openapicheck: %w", err)
	}
	return s, nil
}

// closeObjects adds "additionalProperties": false to every schema object
// with "properties" and no additionalProperties of its own.
func closeObjects(v any) {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["properties"].(map[string]any); ok {
			if _, has := v["additionalProperties"]; !has {
				v["additionalProperties"] = false
			}
		}
		for _, c := range v {
			closeObjects(c)
		}
	case []any:
		for _, c := range v {
			closeObjects(c)
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Paths returns the document's path templates, sorted.
func (s *Spec) Paths() []string {
	var out []string
	for p := range s.paths {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Methods returns the methods (upper case) of the operations of path
// template p, sorted.
func (s *Spec) Methods(p string) []string {
	var out []string
	for m := range s.paths[p] {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Codes returns the enum of the Error schema's "code" property.
func (s *Spec) Codes() []string {
	e, _ := s.lookup("/components/schemas/Error/properties/code/enum").([]any)
	var out []string
	for _, c := range e {
		out = append(out, fmt.Sprint(c))
	}
	return out
}

// Wildcard is the extension of a path item whose last parameter takes the
// rest of the path, slashes included, and may be empty (a route such as
// "/v1/kv/{key...}" of net/http's ServeMux, described as "/v1/kv/{key}").
const Wildcard = "x-qcluster-wildcard"

// Route returns the path template of the document for a ServeMux route
// pattern: "{name...}" becomes "{name}".
func Route(pattern string) string { return strings.ReplaceAll(pattern, "...}", "}") }

// Template returns the path template of the document that path (a request
// path, without query) matches: literal segments equal, a "{name}" segment
// any non-empty one, and the last "{name}" of a Wildcard path item the
// rest of the path (maybe empty).
func (s *Spec) Template(path string) (string, bool) {
	if _, ok := s.paths[path]; ok {
		return path, true
	}
	segs := strings.Split(path, "/")
	for p := range s.paths {
		ts := strings.Split(p, "/")
		if len(ts) != len(segs) && !(s.rest[p] && len(segs) > len(ts)) {
			continue
		}
		ok := true
		for i := range ts {
			if s.rest[p] && i == len(ts)-1 {
				break // the rest of the path
			}
			if strings.HasPrefix(ts[i], "{") && strings.HasSuffix(ts[i], "}") {
				ok = segs[i] != ""
			} else {
				ok = ts[i] == segs[i]
			}
			if !ok {
				break
			}
		}
		if ok {
			return p, true
		}
	}
	return "", false
}

// Check reports whether an answer to method path (the request's path) is
// one the document describes: the operation exists, status is one of its
// responses (not "default"), its content type and declared headers are
// there, and a JSON body validates against the schema. A HEAD answer is
// checked as the GET's, without its body.
func (s *Spec) Check(method, path string, status int, header http.Header, body []byte) error {
	tpl, ok := s.Template(path)
	if !ok {
		return fmt.Errorf("%s %s: no path of the document matches", method, path)
	}
	head := method == http.MethodHead
	if head {
		method = http.MethodGet
	}
	if _, ok := s.paths[tpl][method]; !ok {
		return fmt.Errorf("%s %s: the document has no %s operation on %s", method, path, method, tpl)
	}
	ptr := "/paths/" + escape(tpl) + "/" + strings.ToLower(method) + "/responses/" + strconv.Itoa(status)
	resp, ok := s.lookup(ptr).(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s: status %d is not among the responses the document describes for %s %s", method, path, status, method, tpl)
	}
	if ref, ok := resp["$ref"].(string); ok {
		ptr = strings.TrimPrefix(ref, "#")
		if resp, ok = s.lookup(ptr).(map[string]any); !ok {
			return fmt.Errorf("%s %s: %s does not resolve", method, path, ref)
		}
	}
	if hs, ok := resp["headers"].(map[string]any); ok {
		for name := range hs {
			if header.Get(name) == "" {
				return fmt.Errorf("%s %s: %d without the %s header the document declares", method, path, status, name)
			}
		}
	}
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		return nil
	}
	mt, _, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("%s %s: %d with Content-Type %q: %v", method, path, status, header.Get("Content-Type"), err)
	}
	if _, ok := content[mt]; !ok {
		return fmt.Errorf("%s %s: %d with Content-Type %s; the document says %v", method, path, status, mt, keys(content))
	}
	if head || mt != "application/json" {
		return nil
	}
	sch, err := s.schema(ptr + "/content/" + escape(mt) + "/schema")
	if err != nil {
		return err
	}
	return s.validate(sch, body, fmt.Sprintf("%s %s: %d", method, path, status))
}

// CheckSchema validates a JSON document against the named schema of
// components/schemas (such as "Status" for a /v1/watch leader event).
func (s *Spec) CheckSchema(name string, body []byte) error {
	sch, err := s.schema("/components/schemas/" + escape(name))
	if err != nil {
		return err
	}
	return s.validate(sch, body, name)
}

func (s *Spec) validate(sch *jsonschema.Schema, body []byte, what string) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: the body is not JSON: %v: %q", what, err, body)
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("%s: the body does not match the document: %#v\nbody: %s", what, err, body)
	}
	return nil
}

func (s *Spec) schema(ptr string) (*jsonschema.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.schemas[ptr]; ok {
		return sch, nil
	}
	sch, err := s.compiler.Compile(docURL + "#" + ptr)
	if err != nil {
		return nil, fmt.Errorf("openapicheck: compiling %s: %w", ptr, err)
	}
	s.schemas[ptr] = sch
	return sch, nil
}

// lookup returns the value at a JSON pointer of the document, or nil.
func (s *Spec) lookup(ptr string) any {
	var v any = s.doc
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[tok]
	}
	return v
}

// escape escapes a JSON pointer token.
func escape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
