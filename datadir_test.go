package qcluster

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/qcluster/qcluster/internal/storage"
)

// TestConfigDefaultDataDir checks where data_dir goes by default: a durable
// per-user state directory, never the temporary directory.
func TestConfigDefaultDataDir(t *testing.T) {
	base := Config{Identifier: "server_a", ListenPort: 7001}

	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	if got, want := base.WithDefaults().DataDir, filepath.Join(state, "qcluster", "server_a"); got != want {
		t.Errorf("with $XDG_STATE_HOME: data_dir = %q, want %q", got, want)
	}
	odd := Config{Identifier: "a/b", ListenPort: 7001}.WithDefaults().DataDir
	if filepath.Dir(odd) != filepath.Join(state, "qcluster") || !strings.HasPrefix(filepath.Base(odd), "a_b-") {
		t.Errorf("identifier a/b: data_dir = %q, want a file-name safe name in %s", odd, filepath.Join(state, "qcluster"))
	}
	if strings.HasPrefix(base.WithDefaults().DataDir, os.TempDir()+string(filepath.Separator)) && !strings.HasPrefix(state, os.TempDir()) {
		t.Errorf("data_dir defaults under the temporary directory: %q", base.WithDefaults().DataDir)
	}

	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" || runtime.GOOS == "ios" || runtime.GOOS == "plan9" {
		t.Skipf("the rest checks the XDG fallback, which %s does not use", runtime.GOOS)
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, xdg := range []string{"", "relative/state"} { // the XDG spec ignores a relative path
		t.Setenv("XDG_STATE_HOME", xdg)
		if got, want := base.WithDefaults().DataDir, filepath.Join(home, ".local", "state", "qcluster", "server_a"); got != want {
			t.Errorf("XDG_STATE_HOME=%q: data_dir = %q, want %q", xdg, got, want)
		}
	}

	// No home directory: no default, and Validate says what to do.
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "")
	d := base.WithDefaults()
	if d.DataDir != "" {
		t.Errorf("without a home: data_dir = %q, want none", d.DataDir)
	}
	const want = `qcluster: invalid config: data_dir: missing, and there is no default ($XDG_STATE_HOME is not set and $HOME is not defined); ` +
		`set it to a directory that survives reboots, such as "/var/lib/qcluster/server_a"`
	for name, err := range map[string]error{"Validate": base.Validate(), "Validate after WithDefaults": d.Validate()} {
		if err == nil || err.Error() != want || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s = %v\nwant %s", name, err, want)
		}
	}
	if _, err := ParseConfig([]byte(`{"identifier": "server_a", "listen_port": 7001}`)); err == nil || !strings.Contains(err.Error(), "data_dir: missing, and there is no default") {
		t.Errorf("ParseConfig = %v, want the data_dir problem", err)
	}
	// An explicit data_dir, or masterless mode (no Raft state), needs no home.
	for _, c := range []Config{
		{Identifier: "server_a", ListenPort: 7001, DataDir: "/var/lib/qcluster/a"},
		{Identifier: "server_a", ListenPort: 7001, Mode: ModeMasterless},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
}

// TestDataDirPrepare checks what Start does to data_dir before it opens
// it: creates it, and its missing parents, private to this user (mode
// 0700), and refuses one another user owns.
func TestDataDirPrepare(t *testing.T) {
	if os.Getuid() < 0 {
		t.Skip("no user IDs on this system")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "state", "qcluster", "server_a")
	if err := cfgPrepareDataDir(dir, os.Getuid()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("%s created with mode %#o, want 0700", d, perm)
		}
	}
	// An existing directory of this user's is fine, whatever its mode.
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := cfgPrepareDataDir(dir, os.Getuid()); err != nil {
		t.Errorf("own directory refused: %v", err)
	}

	// The same directory, seen by another user.
	other := os.Getuid() + 1
	err := cfgPrepareDataDir(dir, other)
	if err == nil {
		t.Fatalf("a data_dir owned by uid %d was accepted for uid %d", os.Getuid(), other)
	}
	want := `qcluster: invalid config: data_dir: "` + dir + `" is owned by another user (uid ` + strconv.Itoa(os.Getuid()) + `; this peer runs as uid ` + strconv.Itoa(other) + `), ` +
		`who could rewrite this peer's Raft state (its term and vote); use a directory of this user's: set data_dir to one, or chown this one to uid ` + strconv.Itoa(other) + `, or remove it (it is created with mode 0700)`
	if err.Error() != want || !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("error = %v\nwant %s", err, want)
	}

	// A file where the directory should be.
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfgPrepareDataDir(file, os.Getuid()); err == nil || !strings.HasPrefix(err.Error(), `qcluster: invalid config: data_dir: cannot create "`+file+`"`) {
		t.Errorf("data_dir on a file: %v", err)
	}
}

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
