package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentNotifiesSystemd: under systemd's Type=notify (NOTIFY_SOCKET set)
// the agent says READY=1 once it knows a leader, with a STATUS line, and
// STOPPING=1 when it stops.
func TestAgentNotifiesSystemd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfgPath := filepath.Join(dir, "solo.json")
	cfg := fmt.Sprintf(`{"identifier": "solo", "listen_host": "127.0.0.1", "listen_port": %d, "peers": [], "data_dir": %q}`, port, filepath.Join(dir, "data"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- (&AgentCommand{Stdout: io.Discard, Stderr: io.Discard}).Run(ctx, []string{"--config", cfgPath})
	}()
	read := func(want string) string {
		t.Helper()
		buf := make([]byte, 4096)
		deadline := time.Now().Add(20 * time.Second)
		for {
			_ = conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no %q from the agent: %v", want, err)
			}
			if msg := string(buf[:n]); strings.Contains(msg, want) {
				return msg
			}
		}
	}
	msg := read("READY=1")
	if !strings.Contains(msg, "STATUS=leader (term ") {
		t.Errorf("the READY message %q does not say the peer leads", msg)
	}
	cancel()
	read("STOPPING=1")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agent: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not stop")
	}
}

// TestSDNotifyWithoutSystemd: without NOTIFY_SOCKET nothing is sent and
// nothing fails; a socket address systemd does not use is an error.
func TestSDNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", "vsock:2:1234")
	if err := sdNotify("READY=1"); err == nil {
		t.Errorf("NOTIFY_SOCKET vsock: no error")
	}
}
