package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/internal/pki"
)

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, normalize(doc).(map[string]any))
	}
}

// normalize turns yaml.v2's map[any]any into map[string]any, all the way
// down.
func normalize(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := map[string]any{}
		for k, v := range x {
			m[fmt.Sprint(k)] = normalize(v)
		}
		return m
	case map[string]any:
		for k, v := range x {
			x[k] = normalize(v)
		}
		return x
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
		return x
	}
	return v
}

// at walks a decoded document: at(doc, "spec", "template", ...).
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: %T is not a map", path, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: %T has no item %d", path, v, k)
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string { return fmt.Sprint(v) }

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// TestComposeRunsThreePeersThatFindEachOther: compose.yaml runs three
// peers whose mounted configs load, name each other by the services' host
// names on the port the containers listen on, keep their data on the
// services' volumes, and run --insecure only because they have no TLS.
func TestComposeRunsThreePeersThatFindEachOther(t *testing.T) {
	doc := yamlDocs(t, "compose.yaml")[0]
	services := at(t, doc, "services").(map[string]any)
	if len(services) != 3 {
		t.Fatalf("compose.yaml runs %d services, want 3", len(services))
	}
	hosts := map[string]bool{}
	for name, s := range services {
		if h := str(at(t, s, "hostname")); h != name {
			t.Errorf("service %s has hostname %s", name, h)
		}
		hosts[name] = true
	}
	ids := map[string]bool{}
	for name, s := range services {
		if str(at(t, s, "image")) != "qcluster:local" || str(at(t, s, "build", "dockerfile")) != "Dockerfile" {
			t.Errorf("service %s does not run the image the Dockerfile builds", name)
		}
		var cfgPath, dataMount string
		for _, v := range strs(at(t, s, "volumes")) {
			parts := strings.Split(v, ":")
			switch parts[1] {
			case "/etc/qcluster/qcluster.json":
				cfgPath = parts[0]
			case "/var/lib/qcluster":
				dataMount = parts[0]
			}
		}
		if cfgPath == "" || dataMount == "" {
			t.Fatalf("service %s mounts no config or no data volume: %v", name, at(t, s, "volumes"))
		}
		cfg, err := qcluster.LoadConfig(cfgPath)
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		ids[cfg.Identifier] = true
		if cfg.AdvertiseHost != name || cfg.ListenPort != 7001 || !strings.HasPrefix(cfg.DataDir, "/var/lib/qcluster/") {
			t.Errorf("service %s: advertise_host %q, listen_port %d, data_dir %q: want %s, 7001, under the volume", name, cfg.AdvertiseHost, cfg.ListenPort, cfg.DataDir, name)
		}
		for _, p := range cfg.Peers {
			if !hosts[p.Host] || p.Port != 7001 {
				t.Errorf("service %s: peer %s at %s:%d is no service of compose.yaml", name, p.Identifier, p.Host, p.Port)
			}
		}
		if len(cfg.Peers) != 2 {
			t.Errorf("service %s names %d peers, want 2", name, len(cfg.Peers))
		}
		cmd := strs(at(t, s, "command"))
		if !slices.Contains(cmd, "/etc/qcluster/qcluster.json") {
			t.Errorf("service %s: command %v does not load the mounted config", name, cmd)
		}
		if slices.Contains(cmd, "--insecure") == cfg.Secured() {
			t.Errorf("service %s: --insecure in %v, while its config has TLS: %v", name, cmd, cfg.Secured())
		}
		for _, p := range strs(at(t, s, "ports")) {
			if !strings.HasPrefix(p, "127.0.0.1:") && !cfg.Secured() {
				t.Errorf("service %s publishes %s beyond the host's loopback without TLS", name, p)
			}
		}
	}
	if len(ids) != 3 {
		t.Errorf("the configs have identifiers %v, want 3 different ones", ids)
	}
}

// TestKubernetesPeersFindEachOther: the StatefulSet runs as many peers as
// the config Secret holds, each loading its own config (pod name =
// identifier), naming the others by their pods' DNS names under the
// headless Service, on the port the Service and container expose for TCP
// and UDP, and probed for readiness on /readyz over the scheme its TLS
// settings make the API speak.
func TestKubernetesPeersFindEachOther(t *testing.T) {
	var svc, sts, secret map[string]any
	for _, f := range []string{"kubernetes/qcluster.yaml", "kubernetes/config.yaml"} {
		for _, d := range yamlDocs(t, f) {
			switch str(d["kind"]) {
			case "Service":
				svc = d
			case "StatefulSet":
				sts = d
			case "Secret":
				secret = d
			}
		}
	}
	if svc == nil || sts == nil || secret == nil {
		t.Fatal("want a Service, a StatefulSet and a Secret")
	}
	name := str(at(t, svc, "metadata", "name"))
	if str(at(t, svc, "spec", "clusterIP")) != "None" || str(at(t, sts, "spec", "serviceName")) != name {
		t.Errorf("the StatefulSet's serviceName is not the headless Service %s", name)
	}
	if at(t, svc, "spec", "publishNotReadyAddresses") != true {
		t.Errorf("the Service must publish not-ready pods: a peer is ready only once it reaches the others")
	}
	protos := map[string]bool{}
	for _, p := range at(t, svc, "spec", "ports").([]any) {
		if str(at(t, p, "port")) == "7001" && str(at(t, p, "targetPort")) == "7001" {
			protos[str(at(t, p, "protocol"))] = true
		}
	}
	if !protos["TCP"] || !protos["UDP"] {
		t.Errorf("the Service exposes 7001 over %v, want TCP and UDP", protos)
	}
	pod := at(t, sts, "spec", "template", "spec")
	ctr := at(t, pod, "containers", 0)
	protos = map[string]bool{}
	for _, p := range at(t, ctr, "ports").([]any) {
		if str(at(t, p, "containerPort")) == "7001" {
			protos[str(at(t, p, "protocol"))] = true
		}
	}
	if !protos["TCP"] || !protos["UDP"] {
		t.Errorf("the container exposes 7001 over %v, want TCP and UDP", protos)
	}
	if args := strings.Join(strs(at(t, ctr, "args")), " "); args != "agent --config /etc/qcluster/$(POD_NAME).json" {
		t.Errorf("container args %q", args)
	}
	if str(at(t, ctr, "env", 0, "name")) != "POD_NAME" || str(at(t, ctr, "env", 0, "valueFrom", "fieldRef", "fieldPath")) != "metadata.name" {
		t.Errorf("POD_NAME is not the pod's name")
	}
	if at(t, pod, "securityContext", "runAsNonRoot") != true {
		t.Errorf("the pod may run as root")
	}
	replicas := at(t, sts, "spec", "replicas").(int)
	files := at(t, secret, "stringData").(map[string]any)
	if len(files) != replicas {
		t.Fatalf("%d replicas, %d configs", replicas, len(files))
	}
	// Fill in the secrets as the README says, and load each config.
	fill := strings.NewReplacer("CLUSTER_KEY", pki.NewClusterKey(), "API_TOKEN", "a-long-random-token")
	dir := t.TempDir()
	for i := range replicas {
		podName := fmt.Sprintf("%s-%d", str(at(t, sts, "metadata", "name")), i)
		text, ok := files[podName+".json"]
		if !ok {
			t.Fatalf("no config for pod %s", podName)
		}
		path := filepath.Join(dir, podName+".json")
		if err := os.WriteFile(path, []byte(fill.Replace(str(text))), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := qcluster.LoadConfig(path)
		if err != nil {
			t.Fatalf("%s: %v", podName, err)
		}
		if cfg.Identifier != podName || cfg.AdvertiseHost != podName+"."+name || cfg.ListenPort != 7001 {
			t.Errorf("%s: identifier %s, advertise_host %s, port %d", podName, cfg.Identifier, cfg.AdvertiseHost, cfg.ListenPort)
		}
		if !cfg.Secured() || cfg.APIToken == "" {
			t.Errorf("%s: a cluster on a shared network needs TLS and an API token", podName)
		}
		for _, p := range cfg.Peers {
			var j int
			if _, err := fmt.Sscanf(p.Identifier, str(at(t, sts, "metadata", "name"))+"-%d", &j); err != nil || j >= replicas || j == i ||
				p.Host != p.Identifier+"."+name || p.Port != 7001 {
				t.Errorf("%s: peer %s at %s:%d is not another pod of the StatefulSet", podName, p.Identifier, p.Host, p.Port)
			}
		}
		if len(cfg.Peers) != replicas-1 {
			t.Errorf("%s names %d peers, want %d", podName, len(cfg.Peers), replicas-1)
		}
		wantScheme := "HTTP"
		if cfg.Secured() {
			wantScheme = "HTTPS"
			if cfg.APIClientCerts != "optional" {
				t.Errorf("%s: kubelet's probes carry no client certificate: api_client_certs must be optional", podName)
			}
		}
		for _, probe := range []string{"readinessProbe", "livenessProbe"} {
			if s := str(at(t, ctr, probe, "httpGet", "scheme")); s != wantScheme {
				t.Errorf("%s over %s, but the API speaks %s", probe, s, wantScheme)
			}
		}
	}
	if p := str(at(t, ctr, "readinessProbe", "httpGet", "path")); p != "/readyz" {
		t.Errorf("readiness probe on %s", p)
	}
	if p := str(at(t, ctr, "livenessProbe", "httpGet", "path")); p != "/healthz" {
		t.Errorf("liveness probe on %s", p)
	}
}

// TestDockerfileBuildsAStaticNonRootImage checks the Dockerfile's promises
// in its text (no Docker engine is needed): a static build, an empty final
// image, a non-root user that /etc/passwd names, the port over TCP and UDP,
// and the config path compose mounts.
func TestDockerfileBuildsAStaticNonRootImage(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(text, -1)
	if len(froms) < 2 || froms[len(froms)-1][1] != "scratch" {
		t.Errorf("want a multi-stage build ending FROM scratch: %v", froms)
	}
	for _, want := range []string{"CGO_ENABLED=0 go build", "EXPOSE 7001/tcp 7001/udp", `CMD ["agent", "--config", "/etc/qcluster/qcluster.json"]`} {
		if !strings.Contains(text, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(text)
	if user == nil || user[1] == "0" {
		t.Fatalf("the Dockerfile runs as root")
	}
	if !strings.Contains(text, "qcluster:x:"+user[1]+":"+user[2]+":") {
		t.Errorf("/etc/passwd does not name uid %s", user[1])
	}
}

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit (with a
// stand-in for the binary), when systemd-analyze is installed.
func TestSystemdUnitVerifies(t *testing.T) {
	b, err := os.ReadFile("systemd/qcluster.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"Type=notify", "DynamicUser=yes", "StateDirectory=qcluster", "ProtectSystem=strict", "NoNewPrivileges=yes", "LoadCredential=qcluster.json:"} {
		if !strings.Contains(unit, "\n"+want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian: apt-get install systemd): not verifying the unit")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "qcluster.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/qcluster", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
