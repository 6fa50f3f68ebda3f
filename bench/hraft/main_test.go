package main

import "testing"

func TestParsePeers(t *testing.T) {
	got, err := parsePeers("a=127.0.0.1:7001, b=127.0.0.1:7002")
	if err != nil || len(got) != 2 || got[0].ID != "a" || got[1].Address != "127.0.0.1:7002" {
		t.Fatalf("parsePeers = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "a", "a=", "=127.0.0.1:1", "a=nohost", "a=127.0.0.1:1,,b=127.0.0.1:2"} {
		if _, err := parsePeers(bad); err == nil {
			t.Errorf("parsePeers(%q) accepted", bad)
		}
	}
}

func TestRunNeedsFlags(t *testing.T) {
	if err := run([]string{"-id", "a"}); err == nil {
		t.Error("run without -raft, -http, -peers and -dir succeeded")
	}
}
