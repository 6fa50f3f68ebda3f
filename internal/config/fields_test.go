package config

import (
	"reflect"
	"strings"
	"testing"
)

// checkTable checks a field table against its struct T: every struct field
// has exactly one row and every row one struct field, each row's JSON name
// is the field's json tag ("" for json:"-"), and at points at the field the
// row names. (The rows follow the order of the file format, which is not
// quite the struct order: see TestConfigFieldsComeFromTheOneList.)
func checkTable[T any](t *testing.T, fields []field[T]) {
	t.Helper()
	typ := reflect.TypeFor[T]()
	var zero T
	base := reflect.ValueOf(&zero).Elem()
	rows := map[string]int{}
	for _, f := range fields {
		rows[f.goName]++
		sf, ok := typ.FieldByName(f.goName)
		if !ok {
			t.Errorf("%s: row %q names no struct field", typ, f.goName)
			continue
		}
		tag, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if tag == "-" {
			tag = ""
		}
		if tag != f.name {
			t.Errorf("%s.%s: row's JSON name %q, json tag %q", typ, f.goName, f.name, sf.Tag.Get("json"))
		}
		if got, want := reflect.ValueOf(f.at(&zero)).Pointer(), base.FieldByIndex(sf.Index).Addr().Pointer(); got != want {
			t.Errorf("%s.%s: at points at another field", typ, f.goName)
		}
		if reflect.TypeOf(f.at(&zero)).Elem() != sf.Type {
			t.Errorf("%s.%s: at returns %T, the field is %s", typ, f.goName, f.at(&zero), sf.Type)
		}
		if (sf.Tag.Get("qcluster") == "secret") != f.secret {
			t.Errorf("%s.%s: secret %v, but the struct tag says %q", typ, f.goName, f.secret, sf.Tag.Get("qcluster"))
		}
		if f.zeroDefault != 0 && reflect.TypeOf(f.at(&zero)) != reflect.TypeFor[*Duration]() {
			t.Errorf("%s.%s: zeroDefault on a field that is no Duration", typ, f.goName)
		}
	}
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		if n := rows[name]; n != 1 {
			t.Errorf("%s.%s: %d rows in its table, want 1", typ, name, n)
		}
	}
}

// TestFieldTables: each field is declared once, in its table, and the
// tables match the structs.
func TestFieldTables(t *testing.T) {
	checkTable(t, topFields)
	checkTable(t, peerFields)
	checkTable(t, tlsFields)
	checkTable(t, healthFields)

	// Every JSON field decodes (decodeValue knows its type), has a text
	// syntax, and every secret can be redacted.
	for _, f := range topFields {
		if f.name == "" {
			continue
		}
		d := &decoder{data: []byte("null"), pos: map[string]int{}}
		var c Config
		d.decodeValue(f.at(&c), f.port, f.zeroDefault, member{key: f.name, val: []byte("null")}, f.name)
		if len(d.problems) > 0 {
			t.Errorf("%s: null is refused: %v", f.name, d.problems)
		}
	}
	c := Config{APIToken: "t", ClusterKey: "k", GossipKey: "g", ExtraGossipKeys: []string{"x"}}.Redacted()
	if c.APIToken != redactedText || c.ClusterKey != redactedText || c.GossipKey != redactedText || c.ExtraGossipKeys[0] != redactedText {
		t.Errorf("Redacted: %+v", c)
	}
}
