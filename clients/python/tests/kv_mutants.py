"""The mutation kill list of the KV store and locks (cluster.kv,
cluster.lock): each mutant removes or weakens one protection in the SDK;
the named tests must then FAIL. (.ci/mutants/run runs Go tests only; this
is its Python counterpart for these guards.)

Run from clients/python: ``python3 -m tests.kv_mutants`` (it edits the
files in place, one mutant at a time, and puts them back).
"""

import subprocess
import sys
import os

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, file, the guard, what replaces it, the tests that must fail)
MUTANTS = [
    ("last-event-id", "qcluster/kv.py",
     'headers = {"Last-Event-ID": self._last_id} if self._last_id else None', "headers = None",
     "tests.test_kv.FakeStreamTest.test_watch_resumes_with_last_event_id_then_compacted "
     "tests.test_kv.KVTest.test_watch_in_order_and_resumed_without_loss"),
    ("dot-escape", "qcluster/kv.py", '.replace(".", "%2E")', "",
     "tests.test_kv.KVTest.test_put_get_list_across_agents"),
    ("release-is-not-a-loss", "qcluster/kv.py",
     "            if not self.lost.is_set():\n                self._released = True", "            pass",
     "tests.test_kv.KVTest.test_lock_exclusion_tokens_and_release"),
    ("lock-event-names-the-lock", "qcluster/kv.py", ' or o.get("name") != name:', ":",
     "tests.test_kv.FakeStreamTest.test_lock_refusals"),
    ("compacted-at-connect", "qcluster/kv.py",
     '        if ev.event == "compacted":\n            self._drop()\n            raise CompactedError(_oldest(ev, s.what))\n', "",
     "tests.test_kv.FakeStreamTest.test_watch_from_a_compacted_revision_raises_at_once"),
    ("from-now-goes-on-from-the-index", "qcluster/kv.py", "            self._from = s.index + 1", "            pass",
     "tests.test_kv.FakeStreamTest.test_watch_from_now_goes_on_from_the_index"),
    ("compare-failed-carries-kv", "qcluster/errors.py", '                kv = KeyValue.from_json(body["kv"])',
     "                kv = None", "tests.test_kv.KVTest.test_compare_and_swap"),
    ("lost-on-a-broken-stream", "qcluster/kv.py",
     "                self.lost_reason = reason\n                self.lost.set()", "                pass",
     "tests.test_kv.KVTest.test_lock_lost_when_the_holders_agent_stops"),
    ("base64-checked", "qcluster/types.py", "validate=True", "validate=False",
     "tests.test_kv.FakeStreamTest.test_watch_refuses_an_event_that_is_not_a_kv_event"),
    ("lock-408-asked-again", "qcluster/kv.py",
     "            if e.status == 408 and deadline is None:\n                continue",
     "            if False:\n                continue", "tests.test_kv.FakeStreamTest.test_lock_request_and_lost"),
]


def main() -> int:
    survivors = 0
    for name, path, old, new, tests in MUTANTS:
        path = os.path.join(HERE, path)
        with open(path) as f:
            src = f.read()
        if src.count(old) != 1:
            print("{:36} BROKEN (the guard is not in {} once)".format(name, path))
            survivors += 1
            continue
        with open(path, "w") as f:
            f.write(src.replace(old, new))
        try:
            r = subprocess.run([sys.executable, "-m", "unittest"] + tests.split(), cwd=HERE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
            killed = r.returncode != 0
        finally:
            with open(path, "w") as f:
                f.write(src)
        print("{:36} {}".format(name, "killed" if killed else "SURVIVED"), flush=True)
        survivors += 0 if killed else 1
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
