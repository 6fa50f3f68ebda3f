package benchkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/qcluster/qcluster/internal/proccluster"
)

// FindEtcd returns the etcd binary (given, or etcd on PATH) and its
// version. When etcd is missing and this runs as root, it installs
// Debian's etcd-server package first, saying so on progress.
func FindEtcd(ctx context.Context, given string, progress io.Writer) (bin, version string, err error) {
	bin = given
	if bin == "" {
		bin, err = exec.LookPath("etcd")
		if err != nil {
			if os.Geteuid() != 0 {
				return "", "", errors.New("etcd is not installed and this is not root, so it cannot install Debian's etcd-server (apt-get install etcd-server)")
			}
			fmt.Fprintln(progress, "etcd is missing: apt-get update && apt-get install -y etcd-server ...")
			for _, args := range [][]string{{"update"}, {"install", "-y", "etcd-server"}} {
				cmd := exec.CommandContext(ctx, "apt-get", args...)
				cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
				if out, err := cmd.CombinedOutput(); err != nil {
					return "", "", fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, Tail(out, 10))
				}
			}
			if bin, err = exec.LookPath("etcd"); err != nil {
				return "", "", fmt.Errorf("etcd-server is installed but etcd is not on PATH: %w", err)
			}
		}
	}
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s --version: %w", bin, err)
	}
	return bin, EtcdVersion(string(out)), nil
}

// EtcdVersion finds the version in the output of etcd --version ("?" if
// none).
func EtcdVersion(out string) string {
	m := regexp.MustCompile(`(?m)^etcd Version:\s*(\S+)`).FindStringSubmatch(out)
	if m == nil {
		return "?"
	}
	return m[1]
}

// MajorMinor returns "3.4" of "3.4.23".
func MajorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// EtcdMember is how to run one member of a loopback etcd cluster.
type EtcdMember struct {
	Name      string
	ClientURL string   // http://127.0.0.1:port
	Args      []string // the command line, etcd's binary first
	Env       []string // the environment: this one without ETCD_* variables
}

// EtcdCluster returns the members of an n-member etcd cluster on loopback
// with fresh ports, their data under dir, token naming the cluster, and
// flags added to every member's command line.
func EtcdCluster(bin, dir, token string, n int, flags []string) ([]EtcdMember, error) {
	const host = "127.0.0.1"
	ports, err := proccluster.FreePorts(host, 2*n)
	if err != nil {
		return nil, err
	}
	url := func(port int) string { return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) }
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("etcd_%c=%s", 'a'+i, url(ports[2*i])))
	}
	env := EtcdEnv(os.Environ())
	ms := make([]EtcdMember, n)
	for i := range n {
		name := fmt.Sprintf("etcd_%c", 'a'+i)
		peerURL, clientURL := url(ports[2*i]), url(ports[2*i+1])
		ms[i] = EtcdMember{Name: name, ClientURL: clientURL, Env: env, Args: append([]string{bin,
			"--name", name,
			"--data-dir", filepath.Join(dir, name+".etcd"),
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--logger", "zap", "--log-outputs", "stderr",
		}, flags...)}
	}
	return ms, nil
}

// EtcdEnv drops ETCD_* variables, which would override the flags.
func EtcdEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "ETCD_") {
			out = append(out, kv)
		}
	}
	return out
}

// EtcdStatus is what the benchmarks read of etcd's StatusResponse (POST
// /v3/maintenance/status on the gRPC gateway, answered by the member
// itself).
type EtcdStatus struct {
	Self, Leader, Term uint64
}

// ParseEtcdStatus parses the gateway's JSON of a StatusResponse. Its
// 64-bit integers are JSON strings; a field is left out when zero (no
// leader).
func ParseEtcdStatus(b []byte) (EtcdStatus, error) {
	var raw struct {
		Header   map[string]json.RawMessage `json:"header"`
		Leader   json.RawMessage            `json:"leader"`
		RaftTerm json.RawMessage            `json:"raftTerm"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return EtcdStatus{}, fmt.Errorf("status: %w", err)
	}
	var st EtcdStatus
	var err error
	if st.Self, err = jsonUint(raw.Header["member_id"]); err != nil || st.Self == 0 {
		return st, fmt.Errorf("status: no header.member_id in %.200q", b)
	}
	if st.Leader, err = jsonUint(raw.Leader); err != nil {
		return st, fmt.Errorf("status: leader: %w", err)
	}
	if st.Term, err = jsonUint(raw.RaftTerm); err != nil {
		return st, fmt.Errorf("status: raftTerm: %w", err)
	}
	return st, nil
}

// jsonUint parses a uint64 given as a JSON string or number; absent is 0.
func jsonUint(m json.RawMessage) (uint64, error) {
	s := strings.Trim(string(bytes.TrimSpace(m)), `"`)
	if s == "" || s == "null" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// Tail returns the last n lines of b.
func Tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
