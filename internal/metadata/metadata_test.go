package metadata

import (
	"errors"
	"strings"
	"testing"

	"github.com/qcluster/qcluster/internal/sdkerr"
)

func TestEncodeRefusesWhatCannotBeShared(t *testing.T) {
	if _, err := Encode(map[string]any{"f": func() {}}); !errors.Is(err, sdkerr.ErrInvalidMetadata) {
		t.Errorf("a func: %v, want InvalidMetadata", err)
	}
	if _, err := Encode(map[string]any{"big": strings.Repeat("x", MaxSize)}); !errors.Is(err, sdkerr.ErrInvalidMetadata) {
		t.Errorf("over MaxSize: %v, want InvalidMetadata", err)
	}
	if b, err := Encode(map[string]any{"zone": "a"}); err != nil || string(b) != `{"zone":"a"}` {
		t.Errorf("Encode = %s, %v", b, err)
	}
}

func TestNormalizeDecodesAsEveryPeer(t *testing.T) {
	md, err := Normalize(map[string]any{"n": 3, "l": []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := md["n"].(float64); !ok || n != 3 {
		t.Errorf("n = %#v, want float64 3", md["n"])
	}
	if l, ok := md["l"].([]any); !ok || len(l) != 1 || l[0] != "a" {
		t.Errorf("l = %#v, want []any{\"a\"}", md["l"])
	}
	if md, err := Normalize(nil); md != nil || err != nil {
		t.Errorf("Normalize(nil) = %v, %v", md, err)
	}
}

func TestCacheDecodesOncePerChange(t *testing.T) {
	var c Cache
	if c.Decode("a", nil) != nil {
		t.Error("empty metadata decodes to a map")
	}
	first := c.Decode("a", []byte(`{"v":1}`))
	again := c.Decode("a", []byte(`{"v":1}`))
	first["mark"] = true // the same map: cached (test only: callers must not modify it)
	if again["mark"] != true {
		t.Error("the same metadata was decoded again")
	}
	if md := c.Decode("a", []byte(`{"v":2}`)); md["v"] != float64(2) || md["mark"] != nil {
		t.Errorf("changed metadata = %v", md)
	}
	if md := c.Decode("b", []byte(`[1]`)); md["_invalid"] == nil {
		t.Errorf("not an object = %v, want _invalid", md)
	}
}
