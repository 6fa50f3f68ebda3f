"""A job that must never run twice at once, on three terminals: every peer
loops taking the lock "report-job", runs the job while it holds it, and
lets go. The job bumps a replicated counter in the cluster's KV store with
compare-and-swap, and records the lock's fencing token beside it.

Run one per terminal, from the repository root (with the qcluster binary in
PATH or QCLUSTER_BIN, and PYTHONPATH=clients/python unless the SDK is
installed):

    python3 clients/python/examples/job_lock.py examples/minimal/server_a.json
    python3 clients/python/examples/job_lock.py examples/minimal/server_b.json
    python3 clients/python/examples/job_lock.py examples/minimal/server_c.json

The peers take turns; the run numbers never repeat and the tokens grow.
Stop the holder with Ctrl-C (or kill -9) in the middle of a run: it loses
the lock, and another peer takes it.
"""

import json
import sys
import time

from qcluster import CompareFailedError, KeyNotFoundError, QCluster, QClusterError

LOCK = "report-job"
COUNTER = "jobs/report/runs"


def run_job(cluster, lk, identifier):
    """The job, in steps; it stops as soon as the lock is lost."""
    kv = cluster.kv
    try:
        cur = kv.get(COUNTER)
        runs, rev = int(cur.value), cur.mod_revision
    except KeyNotFoundError:
        runs, rev = 0, 0  # cas=0: create it only if it is still absent
    for step in range(3):
        print("{} working: step {} of run {}".format(identifier, step + 1, runs + 1), flush=True)
        if lk.lost.wait(0.3):  # returns at once when the lock is lost
            print("{} lost the lock ({}): stopping".format(identifier, lk.lost_reason), flush=True)
            return
    try:
        # Compare-and-swap: had another holder written meanwhile, this
        # write would be refused instead of overwriting it.
        kv.put(COUNTER, str(runs + 1), cas=rev)
    except CompareFailedError as e:
        print("{} refused: the counter changed meanwhile ({})".format(identifier, e.kv), flush=True)
        return
    kv.put("jobs/report/last", json.dumps({"by": identifier, "run": runs + 1, "token": lk.token}))
    print("{} finished run {} with token {}".format(identifier, runs + 1, lk.token), flush=True)


def main():
    with open(sys.argv[1]) as f:
        conf = json.load(f)
    identifier = conf["identifier"]
    with QCluster(**conf) as cluster:
        try:
            while True:
                try:
                    with cluster.lock(LOCK) as lk:  # waits while another peer holds it
                        print("{} holds the lock (token {})".format(identifier, lk.token), flush=True)
                        run_job(cluster, lk, identifier)
                except QClusterError as e:  # no leader yet, the agent starting: try again
                    print("{}: {}".format(identifier, e), flush=True)
                time.sleep(1)  # give the other peers a turn
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
