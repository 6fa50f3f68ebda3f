package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
)

// TestVerifierPeer: an acceptor's check of the chain the handshake
// verified: a verified peer of the cluster passes; no verified chain, or
// a peer of another cluster, is refused; AnyCluster takes any cluster.
func TestVerifierPeer(t *testing.T) {
	key, _ := ParseClusterKey(NewClusterKey())
	a, err := Derive(key, Identity{"orders", "a"}, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Derive(key, Identity{"orders", "b"}, nil)
	billing, _ := Derive(key, Identity{"billing", "c"}, nil)

	scs, _, serr, cerr := handshake(t, a.ServerTLS(), b.ClientTLS())
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if id, err := (&Verifier{Cluster: "orders"}).Peer(scs); err != nil || id.Identifier != "b" {
		t.Errorf("a verified peer of the cluster: %+v %v", id, err)
	}
	if _, err := (&Verifier{Cluster: "billing"}).Peer(scs); !errors.Is(err, ErrIdentityMismatch) {
		t.Errorf("a peer of another cluster: %v", err)
	}
	if id, err := (&Verifier{AnyCluster: true}).Peer(scs); err != nil || id.Cluster != "orders" {
		t.Errorf("AnyCluster: %+v %v", id, err)
	}
	unverified := scs
	unverified.VerifiedChains = nil
	if _, err := (&Verifier{Cluster: "orders"}).Peer(unverified); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("a certificate the handshake did not verify: %v", err)
	}

	// Verify: the chain to the roots, then the cluster.
	ca, _ := DeriveCA(key)
	v := &Verifier{Roots: ca.Pool(), Cluster: "orders"}
	if _, err := v.Verify([]*x509.Certificate{billing.Certificate()}, x509.ExtKeyUsageServerAuth); !errors.Is(err, ErrIdentityMismatch) {
		t.Errorf("Verify(other cluster): %v", err)
	}
	anyV := &Verifier{Roots: ca.Pool(), AnyCluster: true}
	if id, err := anyV.Verify([]*x509.Certificate{billing.Certificate()}, x509.ExtKeyUsageServerAuth); err != nil || id.Cluster != "billing" {
		t.Errorf("AnyCluster Verify: %+v %v", id, err)
	}
	otherKey, _ := ParseClusterKey(NewClusterKey())
	stranger, _ := Derive(otherKey, Identity{"orders", "s"}, nil)
	if err := anyV.VerifyServer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{stranger.Certificate()}}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("VerifyServer(another CA): %v", err)
	}
}
