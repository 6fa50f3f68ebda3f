"""`pip install ./clients/python` works with nothing to download: the
in-tree build backend (_build/qcluster_build.py) needs only the standard
library, and what it installs is the package, importable, with its
metadata."""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile

from .support import SDK_DIR

sys.path.insert(0, os.path.join(SDK_DIR, "_build"))
import qcluster_build  # noqa: E402  (the backend, from its backend-path)

sys.path.pop(0)


def _have_pip() -> bool:
    return importlib.util.find_spec("pip") is not None


class PackagingTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="qcluster-pytest-pkg-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_metadata_matches_pyproject(self) -> None:
        p = qcluster_build.project()
        self.assertEqual(p["name"], "qcluster")
        self.assertEqual(p["dependencies"], [])
        try:
            import tomllib  # Python 3.11+
        except ImportError:
            self.skipTest("no tomllib to cross-check the backend's TOML reader")
        with open(os.path.join(SDK_DIR, "pyproject.toml"), "rb") as f:
            want = tomllib.load(f)
        self.assertEqual(want["build-system"]["requires"], [])
        for key, value in p.items():
            self.assertEqual(value, want["project"][key], key)

    def test_wheel_holds_the_package_and_a_valid_record(self) -> None:
        name = qcluster_build.build_wheel(self.dir)
        with zipfile.ZipFile(os.path.join(self.dir, name)) as z:
            names = set(z.namelist())
            for f in os.listdir(os.path.join(SDK_DIR, "qcluster")):
                if f.endswith(".py") or f == "py.typed":
                    self.assertIn("qcluster/" + f, names)
            record = [line for line in z.read(next(n for n in names if n.endswith("/RECORD"))).decode().splitlines() if line]
            self.assertEqual({line.split(",")[0] for line in record}, names)
            for line in record:
                path, digest, size = line.split(",")
                if digest:
                    self.assertEqual(qcluster_build._record_line(path, z.read(path)), line)
            meta = z.read(next(n for n in names if n.endswith("/METADATA"))).decode()
        self.assertIn("Name: qcluster\n", meta)
        self.assertIn("Requires-Python: >=3.8\n", meta)

    @unittest.skipUnless(_have_pip(), "pip is not installed")
    def test_pip_install_needs_no_download(self) -> None:
        target = os.path.join(self.dir, "site")
        for source in (SDK_DIR, os.path.join(self.dir, qcluster_build.build_sdist(self.dir))):
            shutil.rmtree(target, ignore_errors=True)
            out = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-index", "--no-cache-dir", "--quiet", "--target", target, source],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1"),
            )
            self.assertEqual(out.returncode, 0, out.stdout.decode("utf-8", "replace"))
            check = subprocess.run(
                [sys.executable, "-c", "import qcluster, sys; sys.stdout.write(qcluster.__file__)"],
                stdout=subprocess.PIPE,
                cwd=self.dir,
                env=dict(os.environ, PYTHONPATH=target),
            )
            self.assertEqual(check.returncode, 0)
            self.assertTrue(check.stdout.decode().startswith(target), check.stdout)
