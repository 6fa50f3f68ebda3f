package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// TestSmoke runs the smallest configuration of every measurement (about
// 12 s: two failure detections of about 5 s each) and checks the JSON
// report.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters for about 12 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	args := []string{"-json", "-joins", "1", "-tls", "both", "-fd-n", "3", "-fd-reps", "1",
		"-fd-profiles", "local", "-sizes", "5", "-keys", "100"}
	if err := run(ctx, args, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		GOMAXPROCS int `json:"gomaxprocs"`
		Join       []struct {
			TLS     bool `json:"tls"`
			Visible struct {
				N int `json:"n"`
			} `json:"visible"`
		} `json:"join"`
		FD []struct {
			Kills []struct {
				SuspectFirst float64 `json:"suspect_first_ms"`
				DeadAll      float64 `json:"dead_all_ms"`
			} `json:"kills"`
		} `json:"failure_detection"`
		Masterless []struct {
			Peers    int     `json:"peers"`
			Converge float64 `json:"converge_ms"`
		} `json:"masterless"`
		Kill *struct {
			MovedAll   float64 `json:"moved_all_ms"`
			OtherMoved int     `json:"other_keys_moved"`
		} `json:"masterless_kill"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.Bytes())
	}
	switch {
	case rep.GOMAXPROCS < 1:
		t.Errorf("gomaxprocs %d", rep.GOMAXPROCS)
	case len(rep.Join) != 2 || rep.Join[0].TLS || !rep.Join[1].TLS || rep.Join[0].Visible.N != 1 || rep.Join[1].Visible.N != 1:
		t.Errorf("join results: %+v", rep.Join)
	case len(rep.FD) != 1 || len(rep.FD[0].Kills) != 1 || rep.FD[0].Kills[0].DeadAll < rep.FD[0].Kills[0].SuspectFirst:
		t.Errorf("failure detection results: %+v", rep.FD)
	case len(rep.Masterless) != 1 || rep.Masterless[0].Peers != 5:
		t.Errorf("masterless results: %+v", rep.Masterless)
	case rep.Kill == nil || rep.Kill.OtherMoved != 0:
		t.Errorf("kill result: %+v", rep.Kill)
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-run", "nope"}, {"-tls", "maybe"}, {"-sizes", "2"}, {"-fd-profiles", "fast"}, {"-joins", "0"}, {"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	o, err := parseFlags(nil, io.Discard)
	if err != nil || !o.runs("join") || !o.runs("fd") || !o.runs("masterless") || len(o.sizes) != 3 {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}
