package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/qcluster/qcluster/internal/pki"
)

const tlsUsage = `Usage:

	qcluster tls init  --config <file> [--config <file> ...] --out <dir> [--days 730] [--ca-days 3650]
	qcluster tls issue --ca-dir <dir> --identifier <name> [--cluster-name <name>] [--host <host> ...] [--out <dir>]
	qcluster tls issue --cluster-key <key> --identifier <name> [--cluster-name <name>] --out <dir>
	qcluster tls key

Makes what a secure cluster needs (see docs/security.md).

init reads peer configs (one is enough when it lists every peer) and
writes into <dir> a CA (ca.pem, ca-key.pem), a certificate and key for
every peer they name (<identifier>.pem, <identifier>-key.pem) and a gossip
encryption key (gossip.key), then prints the lines to add to each peer's
config:

	"tls": {"ca_file": ".../ca.pem", "cert_file": ".../server_a.pem", "key_file": ".../server_a-key.pem"},
	"gossip_key": "..."

Running it again reuses the CA, the gossip key and the certificates already
in <dir> and only adds what is missing (a new peer's), so it is also how a
peer is added. Each certificate names its peer (URI SAN
qcluster://<cluster_name>/<identifier>) and the host names the configs give
for it, so curl can check them: curl --cacert ca.pem --cert admin.pem
--key admin-key.pem https://localhost:7001/v1/status.

issue makes one more certificate signed by the CA in --ca-dir: for a peer
added later, or for a person or tool calling the API (--identifier admin).
With --cluster-key (or $QCLUSTER_CLUSTER_KEY, which keeps the key off the
command line) it uses the CA every peer derives from that cluster key
instead, and writes ca.pem too, so curl, the CLI and the Python SDK can talk
to a cluster configured with "cluster_key" alone.

key prints a fresh random key, base64: use it as "cluster_key" (one line
of config gives TLS between peers, gossip encryption and certificates) or
as "gossip_key".

Keep ca-key.pem, the -key.pem files, gossip.key and cluster keys secret.

Examples:

	qcluster tls key
	qcluster tls init --config server_a.json --out certs/

Flags:
`

// TLSCommand is "qcluster tls": it makes certificates and keys.
type TLSCommand struct {
	// Stdout receives the snippets, keys and help.
	Stdout io.Writer
	// Stderr is unused; kept for symmetry with the other commands.
	Stderr io.Writer
}

// Run runs "qcluster tls <subcommand>".
func (c *TLSCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.Stdout, tlsUsage)
		return usageErrorf("tls", "tls: no subcommand given (init, issue or key)")
	}
	switch args[0] {
	case "init":
		return c.runInit(args[1:])
	case "issue":
		return c.runIssue(args[1:])
	case "key", "keygen":
		return c.runKey(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.Stdout, tlsUsage)
		return nil
	}
	return usageErrorf("tls", "tls: unknown subcommand %q (want init, issue or key)", args[0])
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// Files made by init and issue, in the output directory.
const (
	caCertFile    = "ca.pem"
	caKeyFile     = "ca-key.pem"
	gossipKeyFile = "gossip.key"
)

// tlsPeer is a peer init makes a certificate for.
type tlsPeer struct {
	identity pki.Identity
	hosts    []string
	configs  []string // the configs whose own peer this is
}

// tlsConfigFile is the part of a peer config init reads. It is decoded
// leniently, without QCluster's validation: the config may already name
// certificate files that do not exist yet.
type tlsConfigFile struct {
	Identifier    string `json:"identifier"`
	ListenHost    string `json:"listen_host"`
	AdvertiseHost string `json:"advertise_host"`
	ClusterName   string `json:"cluster_name"`
	Peers         []struct {
		Host       string `json:"host"`
		Identifier string `json:"identifier"`
	} `json:"peers"`
}

func (c *TLSCommand) runInit(args []string) error {
	fs := flag.NewFlagSet("tls init", flag.ContinueOnError)
	var configs multiFlag
	fs.Var(&configs, "config", "a peer's JSON config `file` (repeatable; one that lists all peers is enough)")
	out := fs.String("out", "", "the `directory` to write the CA, certificates and keys to (required)")
	days := fs.Int("days", 730, "how many days peer certificates are valid")
	caDays := fs.Int("ca-days", 3650, "how many days a new CA is valid")
	if err := parseFlags(fs, args, c.Stdout, tlsUsage); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	switch {
	case len(configs) == 0:
		return usageErrorf("tls", "tls init: --config is required")
	case *out == "":
		return usageErrorf("tls", "tls init: --out is required")
	case *days <= 0 || *caDays <= 0:
		return usageErrorf("tls", "tls init: --days and --ca-days must be positive")
	}
	peers, cluster, err := readTLSConfigs(configs)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tls init: %w", err)
	}
	ca, made, err := loadOrMakeCA(dir, time.Duration(*caDays)*24*time.Hour)
	if err != nil {
		return err
	}
	if made {
		fmt.Fprintf(c.Stdout, "created CA %s (key %s)\n", filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile))
	} else {
		fmt.Fprintf(c.Stdout, "using CA %s\n", filepath.Join(dir, caCertFile))
	}
	gossip, err := loadOrMakeGossipKey(dir)
	if err != nil {
		return err
	}
	names := map[string]string{} // file name -> identifier
	for _, p := range peers {
		base := fileName(p.identity.Identifier)
		if other, dup := names[base]; dup {
			return fmt.Errorf("tls init: identifiers %q and %q would share the file name %s.pem", other, p.identity.Identifier, base)
		}
		names[base] = p.identity.Identifier
		certPath, keyPath := filepath.Join(dir, base+".pem"), filepath.Join(dir, base+"-key.pem")
		status, err := ensureCert(ca, p.identity, p.hosts, certPath, keyPath, time.Duration(*days)*24*time.Hour)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.Stdout, "%s %s for %s (hosts %s)\n", status, certPath, p.identity, strings.Join(p.hosts, ", "))
	}
	fmt.Fprintf(c.Stdout, "\nAdd to each peer's config (cluster_name %q):\n", cluster)
	for _, p := range peers {
		base := fileName(p.identity.Identifier)
		snippet := tlsSnippet(filepath.Join(dir, caCertFile), filepath.Join(dir, base+".pem"), filepath.Join(dir, base+"-key.pem"), gossip)
		where := p.identity.Identifier
		if len(p.configs) > 0 {
			where += " (" + strings.Join(p.configs, ", ") + ")"
		}
		fmt.Fprintf(c.Stdout, "\n%s:\n%s\n", where, snippet)
	}
	fmt.Fprintf(c.Stdout, "\nKeep %s, the -key.pem files and %s secret.\n", caKeyFile, gossipKeyFile)
	return nil
}

// tlsSnippet returns the config lines for one peer.
func tlsSnippet(caFile, certFile, keyFile, gossipKey string) string {
	q := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	return fmt.Sprintf(`  "tls": {"ca_file": %s, "cert_file": %s, "key_file": %s},
  "gossip_key": %s,`, q(caFile), q(certFile), q(keyFile), q(gossipKey))
}

// readTLSConfigs reads the configs and returns every peer they name, in
// order of first mention, with the host names given for it, and the
// cluster name (which must be the same in every config).
func readTLSConfigs(paths []string) ([]*tlsPeer, string, error) {
	var (
		peers   []*tlsPeer
		byID    = map[string]*tlsPeer{}
		cluster string
	)
	add := func(id, host string) *tlsPeer {
		p := byID[id]
		if p == nil {
			p = &tlsPeer{identity: pki.Identity{Identifier: id}}
			byID[id] = p
			peers = append(peers, p)
		}
		for _, h := range hostsFor(host) {
			if !slices.Contains(p.hosts, h) {
				p.hosts = append(p.hosts, h)
			}
		}
		return p
	}
	for i, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, "", &UsageError{Err: fmt.Errorf("tls init: %w", err), Hint: helpHint("tls")}
		}
		var cf tlsConfigFile
		if err := json.Unmarshal(data, &cf); err != nil {
			return nil, "", &UsageError{Err: fmt.Errorf("tls init: %s: %w", path, err), Hint: helpHint("tls")}
		}
		if cf.Identifier == "" {
			return nil, "", &UsageError{Err: fmt.Errorf("tls init: %s has no identifier", path), Hint: helpHint("tls")}
		}
		if i == 0 {
			cluster = cf.ClusterName
		} else if cf.ClusterName != cluster {
			return nil, "", &UsageError{Err: fmt.Errorf("tls init: %s has cluster_name %q, %s has %q: one CA per cluster", path, cf.ClusterName, paths[0], cluster)}
		}
		self := add(cf.Identifier, cf.ListenHost)
		add(cf.Identifier, cf.AdvertiseHost)
		self.configs = append(self.configs, path)
		for j, p := range cf.Peers {
			if p.Identifier == "" {
				return nil, "", &UsageError{Err: fmt.Errorf("tls init: %s: peers[%d] has no identifier", path, j)}
			}
			add(p.Identifier, p.Host)
		}
	}
	for _, p := range peers {
		p.identity.Cluster = cluster
	}
	return peers, cluster, nil
}

// hostsFor returns the names a certificate should carry for a configured
// host: the host itself (and the loopback addresses for localhost), and for
// a wildcard or empty one nothing (the peer's own config or the others'
// name it).
func hostsFor(host string) []string {
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		return nil
	case "localhost":
		// curl https://127.0.0.1:7001 should verify as well.
		return []string{"localhost", "127.0.0.1", "::1"}
	}
	return []string{host}
}

// fileName makes an identifier safe as a file name.
func fileName(id string) string {
	var b strings.Builder
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	// Not empty, not "." or "..", and not the CA's own files.
	if strings.Trim(s, ".") == "" || s == "ca" {
		s = "peer_" + s
	}
	return s
}

// loadOrMakeCA loads the CA in dir, or makes one; made reports which.
func loadOrMakeCA(dir string, validity time.Duration) (ca *pki.CA, made bool, err error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	switch {
	case cerr == nil && kerr == nil:
		ca, err := pki.LoadCA(certPEM, keyPEM)
		if err != nil {
			return nil, false, fmt.Errorf("tls: %s and %s: %w", certPath, keyPath, err)
		}
		return ca, false, nil
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
	case cerr != nil && !errors.Is(cerr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("tls: %w", cerr)
	case kerr != nil && !errors.Is(kerr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("tls: %w", kerr)
	default:
		return nil, false, fmt.Errorf("tls: %s exists without %s (or the other way round); restore it or remove both", certPath, keyPath)
	}
	ca, err = pki.NewCA("QCluster CA", validity)
	if err != nil {
		return nil, false, err
	}
	kp, err := ca.KeyPEM()
	if err != nil {
		return nil, false, err
	}
	if err := writeNew(keyPath, kp, 0o600); err != nil {
		return nil, false, err
	}
	if err := writeNew(certPath, ca.CertPEM(), 0o644); err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// loadOrMakeGossipKey returns the gossip key saved in dir, making and
// saving one the first time.
func loadOrMakeGossipKey(dir string) (string, error) {
	path := filepath.Join(dir, gossipKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		k := strings.TrimSpace(string(b))
		if _, err := pki.ParseGossipKey(k); err != nil {
			return "", fmt.Errorf("tls: %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("tls: %w", err)
	}
	k := pki.NewGossipKey()
	if err := writeNew(path, []byte(k+"\n"), 0o600); err != nil {
		return "", err
	}
	return k, nil
}

// ensureCert issues a certificate for id into certPath and keyPath unless
// a valid one (signed by ca, naming id) is there already. It returns what
// it did.
func ensureCert(ca *pki.CA, id pki.Identity, hosts []string, certPath, keyPath string, validity time.Duration) (string, error) {
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if cerr == nil && kerr == nil {
		if _, err := pki.LoadPEM(ca.CertPEM(), certPEM, keyPEM, id); err != nil {
			return "", fmt.Errorf("tls: %s is there but unusable (%w); remove it and its key to issue a new one", certPath, err)
		}
		return "kept", nil
	}
	if !errors.Is(cerr, fs.ErrNotExist) || !errors.Is(kerr, fs.ErrNotExist) {
		return "", fmt.Errorf("tls: %s and %s: one exists without the other; remove it", certPath, keyPath)
	}
	is, err := ca.Issue(id, hosts, validity)
	if err != nil {
		return "", err
	}
	kp, err := is.KeyPEM()
	if err != nil {
		return "", err
	}
	if err := writeNew(keyPath, kp, 0o600); err != nil {
		return "", err
	}
	if err := writeNew(certPath, is.CertPEM(), 0o644); err != nil {
		return "", err
	}
	return "created", nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("tls: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return nil
}

func (c *TLSCommand) runIssue(args []string) error {
	fs := flag.NewFlagSet("tls issue", flag.ContinueOnError)
	caDir := fs.String("ca-dir", "", "the `directory` holding ca.pem and ca-key.pem (as made by tls init)")
	clusterKey := fs.String("cluster-key", "", "issue from the CA derived from this cluster `key` instead of --ca-dir (default $"+envClusterKey+" when --ca-dir is not given)")
	ident := fs.String("identifier", "", "the identifier the certificate names (a peer's, or a client's such as admin) (required)")
	cluster := fs.String("cluster-name", "", "the cluster_name of the cluster")
	var hosts multiFlag
	fs.Var(&hosts, "host", "a host `name` or IP address to put in the certificate (repeatable)")
	out := fs.String("out", "", "the `directory` to write <identifier>.pem and <identifier>-key.pem to (default: --ca-dir)")
	days := fs.Int("days", 730, "how many days the certificate is valid")
	if err := parseFlags(fs, args, c.Stdout, tlsUsage); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *clusterKey == "" && *caDir == "" {
		// Read after parsing, so that help never prints it; an
		// environment variable keeps the key off the command line, which
		// other local users can read.
		*clusterKey = os.Getenv(envClusterKey)
	}
	switch {
	case *ident == "":
		return usageErrorf("tls", "tls issue: --identifier is required")
	case (*caDir == "") == (*clusterKey == ""):
		return usageErrorf("tls", "tls issue: give either --ca-dir or --cluster-key")
	case *clusterKey != "" && *out == "":
		return usageErrorf("tls", "tls issue: --out is required with --cluster-key")
	case *days <= 0:
		return usageErrorf("tls", "tls issue: --days must be positive")
	}
	dir := *out
	if dir == "" {
		dir = *caDir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tls issue: %w", err)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	var ca *pki.CA
	if *clusterKey != "" {
		key, err := pki.ParseClusterKey(*clusterKey)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("tls issue: --cluster-key: %w", err), Hint: helpHint("tls")}
		}
		if ca, err = pki.DeriveCA(key); err != nil {
			return err
		}
		caPath := filepath.Join(dir, caCertFile)
		if old, err := os.ReadFile(caPath); err == nil {
			if string(old) != string(ca.CertPEM()) {
				return fmt.Errorf("tls issue: %s holds another CA; use another --out", caPath)
			}
		} else if err := writeNew(caPath, ca.CertPEM(), 0o644); err != nil {
			return err
		}
	} else {
		certPEM, err := os.ReadFile(filepath.Join(*caDir, caCertFile))
		if err != nil {
			return fmt.Errorf("tls issue: %w", err)
		}
		keyPEM, err := os.ReadFile(filepath.Join(*caDir, caKeyFile))
		if err != nil {
			return fmt.Errorf("tls issue: %w", err)
		}
		if ca, err = pki.LoadCA(certPEM, keyPEM); err != nil {
			return fmt.Errorf("tls issue: %w", err)
		}
	}
	id := pki.Identity{Cluster: *cluster, Identifier: *ident}
	base := fileName(*ident)
	certPath, keyPath := filepath.Join(dir, base+".pem"), filepath.Join(dir, base+"-key.pem")
	status, err := ensureCert(ca, id, hosts, certPath, keyPath, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "%s %s for %s\n", status, certPath, id)
	fmt.Fprintf(c.Stdout, "\nFor a peer's config:\n  \"tls\": {\"ca_file\": %q, \"cert_file\": %q, \"key_file\": %q},\n",
		filepath.Join(dir, caCertFile), certPath, keyPath)
	fmt.Fprintf(c.Stdout, "\nFor curl:\n  curl --cacert %s --cert %s --key %s https://<host>:<port>/v1/status\n",
		filepath.Join(dir, caCertFile), certPath, keyPath)
	return nil
}

func (c *TLSCommand) runKey(args []string) error {
	fs := flag.NewFlagSet("tls key", flag.ContinueOnError)
	if err := parseFlags(fs, args, c.Stdout, tlsUsage); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	fmt.Fprintln(c.Stdout, pki.NewClusterKey())
	return nil
}
