package idleprocs

import (
	"errors"
	"testing"
	"time"
)

func TestParsePressure(t *testing.T) {
	got, err := parsePressure("some avg10=1.50 avg60=0.20 avg300=0.05 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n")
	if err != nil || got != 123456*time.Microsecond {
		t.Fatalf("parsePressure = %v, %v; want 123.456ms", got, err)
	}
	for _, bad := range []string{"", "full avg10=0.00 total=7\n", "some avg10=0.00\n", "some total=-1\n", "some total=x\n"} {
		if _, err := parsePressure(bad); !errors.Is(err, errNoPressure) {
			t.Errorf("parsePressure(%q) = %v, want errNoPressure", bad, err)
		}
	}
	if _, err := machineStalled(); err != nil {
		t.Logf("this machine has no CPU pressure information: %v", err)
	}
}
