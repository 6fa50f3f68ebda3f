"""Tests of the QCluster Python SDK. Run from the repository root:

    python3 -m unittest discover -s clients/python -t clients/python

The tests that run agents build `qcluster` from this tree with `go build`
(once per run) unless QCLUSTER_BIN names a binary.
"""
