package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unicode"
	"unicode/utf8"
)

// defaultDataDir returns the default data_dir of the peer named id:
// "qcluster/<id>" in the per-user state directory (see Config.DataDir).
func defaultDataDir(id string) (string, error) {
	home, err := stateHome()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, "qcluster", dirName(id)), nil
}

// stateHome returns the per-user directory for durable state:
// $XDG_STATE_HOME when it is an absolute path, else ~/.local/state (the XDG
// default), ~/Library/Application Support on macOS and %LocalAppData% on
// Windows.
func stateHome() (string, error) {
	if dir := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return dir, nil
	}
	switch runtime.GOOS {
	case "windows":
		if dir := os.Getenv("LocalAppData"); filepath.IsAbs(dir) {
			return dir, nil
		}
		return os.UserConfigDir()
	case "darwin", "ios":
		return os.UserConfigDir()
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("$XDG_STATE_HOME is not set and %w", err)
	}
	return filepath.Join(home, ".local", "state"), nil
}

// PrepareDataDir makes dir ready for a peer's durable state: it creates
// it, and its missing parents, with mode 0700, and refuses it when another
// user than uid owns it (uid < 0: no owner check, as on Windows), since
// that user could rewrite the peer's term and vote. Start calls it in
// leader mode.
func PrepareDataDir(dir string, uid int) error {
	problem := func(format string, args ...any) error {
		return &configError{problems: []Problem{{At: "data_dir", Text: fmt.Sprintf(format, args...)}}}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return problem("data_dir: cannot create %s: %v; set data_dir to a directory this user may create", quote(dir), err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return problem("data_dir: %v", err)
	}
	if owner, ok := fileOwner(fi); ok && uid >= 0 && owner != uid {
		return problem("data_dir: %s is owned by another user (uid %d; this peer runs as uid %d), who could rewrite this peer's Raft state (its term and vote); "+
			"use a directory of this user's: set data_dir to one, or chown this one to uid %d, or remove it (it is created with mode 0700)",
			quote(dir), owner, uid, uid)
	}
	return nil
}

// dirName turns an identifier into a safe directory name: characters
// other than letters, digits, '-', '_' and '.' become '_', and a name that
// had to change (or is long) gets a hash suffix so it stays unique.
func dirName(id string) string {
	name := strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (r == '-' || r == '_' || r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return '_'
	}, id)
	if strings.Trim(name, ".") == "" {
		name = strings.ReplaceAll(name, ".", "_")
	}
	if name != id || len(name) > 64 {
		name = fmt.Sprintf("%s-%016x", name[:min(len(name), 48)], NodeID(id))
	}
	return name
}
