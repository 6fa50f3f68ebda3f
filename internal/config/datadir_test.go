package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
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
	if _, err := Parse([]byte(`{"identifier": "server_a", "listen_port": 7001}`)); err == nil || !strings.Contains(err.Error(), "data_dir: missing, and there is no default") {
		t.Errorf("Parse = %v, want the data_dir problem", err)
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
	if err := PrepareDataDir(dir, os.Getuid()); err != nil {
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
	if err := PrepareDataDir(dir, os.Getuid()); err != nil {
		t.Errorf("own directory refused: %v", err)
	}

	// The same directory, seen by another user.
	other := os.Getuid() + 1
	err := PrepareDataDir(dir, other)
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
	if err := PrepareDataDir(file, os.Getuid()); err == nil || !strings.HasPrefix(err.Error(), `qcluster: invalid config: data_dir: cannot create "`+file+`"`) {
		t.Errorf("data_dir on a file: %v", err)
	}
}
