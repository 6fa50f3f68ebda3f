package qcluster

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// TestReadmeInstall: the README's Install section gives the commands that
// install each form of QCluster, and they name things that exist: the
// module's command, the container build, the Python package.
func TestReadmeInstall(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	_, install, ok := strings.Cut(readme, "\n## Install\n")
	if !ok {
		t.Fatal("README.md has no '## Install' section")
	}
	install, _, _ = strings.Cut(install, "\n## ")
	for _, want := range []string{
		"go install github.com/qcluster/qcluster/cmd/qcluster@latest",
		"docker build -t qcluster .",
		"pip install ./clients/python",
		"[LICENSE](LICENSE)",
		"[CHANGELOG.md](CHANGELOG.md)",
	} {
		if !strings.Contains(install, want) {
			t.Errorf("README.md's Install section does not say %q", want)
		}
	}
	mod, err := os.ReadFile("go.mod")
	if err != nil || !strings.HasPrefix(string(mod), "module github.com/qcluster/qcluster\n") {
		t.Errorf("go.mod does not declare module github.com/qcluster/qcluster: %v", err)
	}
	for _, p := range []string{"cmd/qcluster/main.go", "clients/python/pyproject.toml", "CHANGELOG.md"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the README's install instructions need %s: %v", p, err)
		}
	}
}

// apache2SHA256 is the SHA-256 of the Apache License 2.0 as published at
// https://www.apache.org/licenses/LICENSE-2.0.txt.
const apache2SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"

// TestLicenseIsApache2: LICENSE is the Apache License 2.0, word for word.
func TestLicenseIsApache2(t *testing.T) {
	b, err := os.ReadFile("LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != apache2SHA256 {
		t.Errorf("LICENSE is not the Apache License 2.0 text (sha256 %s)", got)
	}
	for _, want := range []string{"Apache License", "Version 2.0, January 2004", "END OF TERMS AND CONDITIONS"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("LICENSE does not say %q", want)
		}
	}
}
