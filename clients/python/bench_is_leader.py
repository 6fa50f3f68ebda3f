"""Benchmark of QCluster.is_leader() across the process boundary.

Starts a local 3-peer cluster (three QCluster objects in this process, each
with its own `qcluster agent`: $QCLUSTER_BIN or PATH) and measures:

- is_leader() calls per second (it answers locally, from the lease copy);
- how a healthy leader's lease copy holds: the margin left before it would
  lapse, and how often is_leader() flapped to False while the agent led;
- the staleness bound: after the leader's agent is paused (SIGSTOP), how
  long is_leader() still said True (at most the lease the agent last
  reported, less the margin: under one election timeout);
- the CPU cost of the polling that keeps the copy fresh: the leader's agent
  and this process, with the leader polled as usual, against the same with
  polling stopped.

    python3 clients/python/bench_is_leader.py [--seconds 5] [--pauses 5]
"""

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qcluster import QCluster  # noqa: E402


def free_ports(n: int) -> List[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def configs(data: str) -> List[Dict[str, object]]:
    ports = free_ports(3)
    ids = ["server_a", "server_b", "server_c"]
    return [
        {
            "identifier": ids[i],
            "listen_host": "127.0.0.1",
            "listen_port": ports[i],
            "data_dir": os.path.join(data, ids[i]),
            "peers": [{"host": "127.0.0.1", "port": ports[j], "identifier": ids[j]} for j in range(3) if j != i],
        }
        for i in range(3)
    ]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def leader_of(clusters: List[QCluster], timeout: float = 30.0) -> QCluster:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [c for c in clusters if c.is_leader()]
        if len(leaders) == 1:
            return leaders[0]
        time.sleep(0.01)
    raise SystemExit("no leader within {:.0f}s".format(timeout))


def calls_per_second(c: QCluster, seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    end = start + seconds
    f = c.is_leader
    while True:
        for _ in range(1000):
            f()
        n += 1000
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


def hold(c: QCluster, seconds: float) -> Tuple[int, float, int, int]:
    """Samples is_leader() every ms for `seconds`: returns the flaps to
    False, the smallest validity left at a sample (ms), the samples, and the
    poller's answers in the period."""
    lease = c._core.lease
    flaps, min_left, samples = 0, float("inf"), 0
    was = True
    req0 = c._core.requests
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.monotonic()
        v = lease.valid(now)
        if v:
            min_left = min(min_left, lease.valid_until() - now)
        elif was:
            flaps += 1
        was = v
        samples += 1
        time.sleep(0.001)
    return flaps, min_left * 1000, samples, c._core.requests - req0


def cpu_of(c: QCluster, seconds: float) -> Tuple[float, float]:
    """CPU used by the leader's agent and by this process, in % of one
    core, over `seconds`."""
    pid = c.agent_pid
    assert pid is not None
    a0, p0, t0 = cpu_seconds(pid), time.process_time(), time.monotonic()
    time.sleep(seconds)
    a1, p1, t1 = cpu_seconds(pid), time.process_time(), time.monotonic()
    return 100 * (a1 - a0) / (t1 - t0), 100 * (p1 - p0) / (t1 - t0)


def staleness(clusters: List[QCluster], pauses: int) -> List[float]:
    """SIGSTOPs the leader's agent `pauses` times: how long is_leader()
    stayed True after each stop (ms)."""
    out = []
    for _ in range(pauses):
        lead = leader_of(clusters)
        time.sleep(0.3)  # let it settle into a steady lease
        pid = lead.agent_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        last = 0.0
        try:
            while time.monotonic() - stopped < 0.5:
                before = time.monotonic()
                if lead.is_leader():
                    last = before - stopped
        finally:
            os.kill(pid, signal.SIGCONT)
        out.append(last * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    ap.add_argument("--pauses", type=int, default=5, help="SIGSTOP trials for the staleness bound")
    args = ap.parse_args()

    data = tempfile.mkdtemp(prefix="qcluster-bench-")
    clusters = []  # type: List[QCluster]
    try:
        for conf in configs(data):
            clusters.append(QCluster(**conf))
        lead = leader_of(clusters)
        core = lead._core
        print("leader: {} (asks {:.0f} ms before its lease copy ends, at most every {:.0f} ms; hold {:.0f} ms, "
              "margin {:.0f} ms)".format(lead.identifier, core.refresh_ahead * 1000, core.poll_max * 1000,
                                         core.lease.hold * 1000, core.lease.margin * 1000))

        print("is_leader() calls per second: {:,.0f}".format(calls_per_second(lead)))

        flaps, min_left, samples, answers = hold(lead, args.seconds)
        print("healthy leader over {:.0f}s: {} samples, {} flaps to False, smallest lease left {:.1f} ms, "
              "{:.0f} polls/s".format(args.seconds, samples, flaps, min_left, answers / args.seconds))

        agent_on, proc_on = cpu_of(lead, args.seconds)
        saved = core.refresh_ahead, core.poll_max
        core.refresh_ahead, core.poll_max = -3600.0, 3600.0  # stop polling the leader (its lease copy lapses)
        time.sleep(0.2)
        agent_off, proc_off = cpu_of(lead, args.seconds)
        core.refresh_ahead, core.poll_max = saved
        core._wake.set()
        print("CPU, % of one core: leader's agent {:.2f} polled vs {:.2f} not polled (polling costs it {:.2f}); "
              "this process (3 pollers) {:.2f} vs {:.2f}".format(
                  agent_on, agent_off, agent_on - agent_off, proc_on, proc_off))

        if hasattr(signal, "SIGSTOP") and args.pauses > 0:
            st = staleness(clusters, args.pauses)
            print("staleness: is_leader() last true {} ms after SIGSTOP of the agent (max {:.0f} ms; bound: the lease "
                  "the agent last reported, under one election timeout of {:.0f} ms)".format(
                      ", ".join("{:.0f}".format(x) for x in st), max(st), core.lease.hold * 1000))
    finally:
        for c in clusters:
            c.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
