"""The seed's "bare minimum" example: every peer runs the same work loop
once a second, and only the leader does the work.

Run one per terminal, from the repository root (with the qcluster binary in
PATH or QCLUSTER_BIN, and PYTHONPATH=clients/python unless the SDK is
installed):

    python3 clients/python/examples/minimal.py examples/minimal/server_a.json
    python3 clients/python/examples/minimal.py examples/minimal/server_b.json
    python3 clients/python/examples/minimal.py examples/minimal/server_c.json

Stop the leader with Ctrl-C and watch another peer take over.
"""

from qcluster import QCluster
import asyncio
import sys
import json

# The seed's example uses a `logger` it never defines; these three lines are
# the only addition to it.
import logging
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
logger = logging.getLogger("minimal")


async def main():
    conf_file = sys.argv[1]
    with open(conf_file) as f:
        conf = json.load(f)
    identifier = conf['identifier']
    cluster = QCluster(**conf)
    while True:
        if cluster.is_leader():
            logger.info("I am the leader!")
            logger.info("{} is doing some work...".format(identifier))
        else:
            logger.info("I am not the leader :(")
            logger.info("This is the leader: {}".format(cluster.get_leader_info()))
        await asyncio.sleep(1)


if __name__ == "__main__":
    asyncio.run(main())
