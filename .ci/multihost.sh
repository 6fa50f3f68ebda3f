#!/usr/bin/env bash
# Multi-host fault tests: real `qcluster agent` processes, one per Linux
# network namespace, under kill -9, partitions, SIGSTOP, rolling restarts and
# latency, a firewall that rejects the leader's port (see
# test/multihost/doc.go). Needs root, iproute2 and nftables; installs them
# when `ip` or `nft` is missing. It skips (prints "multihost: skipped:
# <reason>", exits 0) only where it cannot apply: not Linux, or not root.
# As root on Linux it must run: a missing iproute2, namespaces that cannot
# be made, or a test that skips fail it (exit 1), so CI never stays green
# without the suite.
#
# Environment: QCLUSTER_MULTIHOST_FULL=1 for the long run (60s idle under
# latency, more repetitions); QCLUSTER_MULTIHOST_IDLE, _REPS, _LOGDIR,
# _SWITCH tune it (see the package doc).
set -uo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "multihost: skipped: $*"
  exit 0
}
fail() {
  echo "multihost: FAILED: $*"
  exit 1
}

[ "$(uname -s)" = Linux ] || skip "needs Linux network namespaces (this is $(uname -s))"
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces (running as uid $(id -u))"

if ! command -v ip >/dev/null 2>&1; then
  echo "multihost: ip is missing: installing iproute2"
  if ! { apt-get update && apt-get install -y iproute2; } >/tmp/multihost-apt.log 2>&1; then
    tail -5 /tmp/multihost-apt.log
    fail "ip (iproute2) is missing and could not be installed"
  fi
fi

if ! command -v nft >/dev/null 2>&1; then
  echo "multihost: nft is missing: installing nftables"
  if ! { apt-get update && apt-get install -y nftables; } >/tmp/multihost-apt.log 2>&1; then
    tail -5 /tmp/multihost-apt.log
    fail "nft (nftables, for the reject scenario) is missing and could not be installed"
  fi
fi

probe="qcmh$$-probe"
if ! out=$(ip netns add "$probe" 2>&1); then
  fail "ip netns add does not work here (as root on Linux): $out"
fi
if ! out=$(ip netns del "$probe" 2>&1); then
  fail "ip netns del does not work here (as root on Linux): $out"
fi

# Remove the namespaces of runs that died (their pid is in the name).
sweep() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^qcmh[0-9]+-' || true); do
    pid=${ns#qcmh}
    pid=${pid%%-*}
    if ! kill -0 "$pid" 2>/dev/null; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
      ip netns del "$ns" 2>/dev/null
    fi
  done
}
sweep

log=$(mktemp /tmp/multihost.XXXXXX.log)
t0=$(date +%s)
QCLUSTER_MULTIHOST_REQUIRED=1 go test -tags multihost -count=1 -timeout 15m -v ./test/multihost/ >"$log" 2>&1
rc=$?
sweep
if [ "$rc" -eq 0 ] && grep -q -e '--- SKIP' "$log"; then
  grep -e '--- SKIP' -A2 "$log" | head -20
  echo "multihost: FAILED: tests skipped as root on Linux"
  rc=1
fi
if [ "$rc" -eq 0 ] && ! grep -q -e '^--- PASS: TestThreePeers' "$log"; then
  echo "multihost: FAILED: TestThreePeers did not run"
  rc=1
fi
echo "multihost: suite took $(( $(date +%s) - t0 ))s"
if [ "$rc" -ne 0 ]; then
  echo "multihost: FAILED (exit $rc); the failures (full log: $log):"
  grep -E -- '--- FAIL|_test\.go:[0-9]+: .*(split|lease|overlap|bound|conflict|regression|spurious|did not|no leader|still|claim|unasked|cannot run)' "$log" | head -60
  echo "..."
fi
tail -60 "$log"
exit "$rc"
