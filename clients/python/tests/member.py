"""A cluster member for the tests: QCluster(**conf) from the JSON file named
on the command line, then reports on stdout, one JSON object per line:

    {"event": "ready", "pid": ..., "agent_pid": ..., "agent_log": ...}
    {"event": "role", "is_leader": true, "before": b, "after": a}
    {"event": "role", "is_leader": false, "before": b, "after": a}
    {"event": "info", "leader": [host, port, identifier, metadata] or null}

is_leader() is sampled every 2 ms; b and a are the time.monotonic() just
before and just after the first True sample of a leadership (is_leader
true) or its last True sample (is_leader false): the call answered True at
some instant between b and a. The process closes its QCluster and
exits when its stdin reaches EOF.
"""

import json
import os
import sys
import threading
import time

from qcluster import QCluster


def emit(**ev):
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


def main():
    with open(sys.argv[1]) as f:
        conf = json.load(f)
    cluster = QCluster(**conf)
    emit(event="ready", pid=os.getpid(), agent_pid=cluster.agent_pid, agent_log=cluster.agent_log_path)

    stop = threading.Event()

    def stdin_eof():
        sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=stdin_eof, daemon=True).start()

    leading, last_true = False, (0.0, 0.0)
    info = ()  # never equal to a real value
    while not stop.is_set():
        before = time.monotonic()
        now_leading = cluster.is_leader()
        after = time.monotonic()
        if now_leading:
            last_true = (before, after)
            if not leading:
                emit(event="role", is_leader=True, before=before, after=after)
        elif leading:
            emit(event="role", is_leader=False, before=last_true[0], after=last_true[1])
        leading = now_leading
        leader = cluster.get_leader_info()
        if leader != info:
            info = leader
            emit(event="info", leader=list(leader) if leader else None)
        stop.wait(0.002)
    cluster.close()


if __name__ == "__main__":
    main()
