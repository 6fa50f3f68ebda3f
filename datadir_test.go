package qcluster

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/qcluster/qcluster/internal/storage"
)

// TestStartUsesPrivateDefaultDataDir starts a peer with no data_dir: its
// state goes to the per-user state directory, created with mode 0700.
// It also checks that Start refuses a data_dir another user owns.
func TestStartUsesPrivateDefaultDataDir(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	t.Setenv("XDG_STATE_HOME", state)
	start := func(dataDir string) (*Cluster, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.Identifier, cfg.Listener, cfg.DataDir = "solo", ln, dataDir
		cfg.Logger = slog.New(slog.DiscardHandler)
		c, err := New(cfg)
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		err = c.Start(context.Background())
		if err != nil {
			ln.Close()
		}
		return c, err
	}
	c, err := start("")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(state, "qcluster", "solo")
	if got := c.Config().DataDir; got != want {
		t.Errorf("data_dir = %q, want %q", got, want)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{want, filepath.Dir(want)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 && runtime.GOOS != "windows" {
			t.Errorf("%s has mode %#o, want 0700", d, perm)
		}
	}
	if _, err := os.Stat(filepath.Join(want, storage.FileName)); err != nil {
		t.Errorf("no Raft state in %s: %v", want, err)
	}

	if runtime.GOOS == "windows" {
		return // no owner check
	}
	// A directory another user owns: as root, one given away; otherwise
	// "/", which root owns (and this user cannot write).
	foreign := string(filepath.Separator)
	owner := "0"
	if os.Getuid() == 0 {
		foreign, owner = filepath.Join(t.TempDir(), "foreign"), "65534"
		if err := os.Mkdir(foreign, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	c, err = start(foreign)
	c.Close() // started or not
	if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "data_dir: \""+foreign+"\" is owned by another user (uid "+owner+";") {
		t.Fatalf("Start with a data_dir owned by uid %s = %v, want a refusal", owner, err)
	}
}
