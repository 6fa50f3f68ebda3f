"""The README and the error classes cannot drift from the code: every call
the README's table names exists, and every error code of the Go API
(api/api.go) has its exception class, and no class names a code the API
does not have."""

import os
import re
import unittest

import qcluster
from qcluster import errors

from .support import REPO, SDK_DIR


class DocsTest(unittest.TestCase):
    def test_readme_calls_exist(self) -> None:
        with open(os.path.join(SDK_DIR, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        table = [line for line in readme.splitlines() if line.startswith("| `")]
        self.assertGreater(len(table), 10)
        names = set()
        for row in table:
            first = row.split("|")[1]
            for call in re.findall(r"`(?:QCluster\.)?((?:kv\.)?[a-z_]+)\(", first):
                names.add(call)
        self.assertIn("get_leader_info", names)
        self.assertIn("kv.watch", names)
        for name in sorted(names):
            if name.startswith("kv."):
                # cluster.kv's calls: on KV, and on AsyncQCluster.kv's AsyncKV
                self.assertTrue(hasattr(qcluster.QCluster, "kv"))
                self.assertTrue(hasattr(qcluster.KV, name[3:]), "README names QCluster.{}".format(name))
                self.assertTrue(hasattr(qcluster.AsyncKV, name[3:]), "README names AsyncQCluster.{}".format(name))
                continue
            self.assertTrue(hasattr(qcluster.QCluster, name), "README names QCluster.{}".format(name))
            if name not in ("start",):
                self.assertTrue(hasattr(qcluster.AsyncQCluster, name), "README names AsyncQCluster.{}".format(name))
        for cls in re.findall(r"`((?:qcluster\.)?[A-Z][A-Za-z]+Error)`", readme):
            self.assertTrue(hasattr(qcluster, cls.replace("qcluster.", "")), "README names {}".format(cls))

    def test_error_classes_match_the_api_codes(self) -> None:
        path = os.path.join(REPO, "api", "api.go")
        if not os.path.isfile(path):
            self.skipTest("no api/api.go (the SDK outside its repository)")
        with open(path, encoding="utf-8") as f:
            src = f.read()
        codes = set(re.findall(r'^\s*Code[A-Za-z]+\s*=\s*"([a-z_]+)"', src, re.M))
        self.assertIn("no_leader", codes)
        self.assertEqual(set(errors._BY_CODE), codes)
        for code, cls in errors._BY_CODE.items():
            camel = "".join(part.title() for part in code.split("_")) + "Error"
            self.assertEqual(cls.__name__, camel, "the class of code {} is named after it".format(code))
            self.assertIs(getattr(qcluster, cls.__name__), cls)


if __name__ == "__main__":
    unittest.main()
