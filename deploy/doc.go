// Package deploy holds no code: its tests check the deployment files beside
// them (the Dockerfile at the repository's root, compose.yaml, the systemd
// unit, the Kubernetes manifests and the Grafana dashboard) against what
// the code really does: every config they hold loads, every peer they name
// is reachable under the name they give it, and every metric the
// dashboard queries is one a peer registers.
package deploy
