"""A PEP 517 build backend for the qcluster package, standard library only.

``pip install ./clients/python`` must work on a machine that cannot
download anything, and setuptools, the usual backend, is a build
dependency pip would download into its isolated build environment. This
backend has no requirements: it writes the wheel (a zip file with the
package and its .dist-info, PEP 427) and the sdist (a tar.gz, PEP 625)
itself. The project's metadata is read from pyproject.toml's [project]
table (with a small reader for the subset of TOML that table uses, since
tomllib is only in Python 3.11+), the version from qcluster/_version.py.
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # clients/python
PACKAGE = "qcluster"
# Files of the sdist besides the package (paths relative to HERE).
SDIST_EXTRA = ["pyproject.toml", "README.md", "_build/qcluster_build.py"]


def _version() -> str:
    with open(os.path.join(HERE, PACKAGE, "_version.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M)
    if not m:
        raise RuntimeError("qcluster/_version.py has no __version__")
    return m.group(1)


def project() -> Dict[str, Any]:
    """The [project] table of pyproject.toml: strings, and arrays of
    strings (one per line or on one line), which is all it holds."""
    with open(os.path.join(HERE, "pyproject.toml"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = {}  # type: Dict[str, Any]
    in_project, key, items = False, None, None  # type: bool, Optional[str], Optional[List[str]]
    for raw in lines:
        line = raw.strip()
        if items is not None:
            if line.startswith("]"):
                out[key] = items  # type: ignore[index]
                items = None
            elif line:
                items.extend(re.findall(r'"((?:[^"\\]|\\.)*)"', line))
            continue
        if line.startswith("["):
            in_project = line == "[project]"
            continue
        if not in_project or not line or line.startswith("#"):
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        value = re.sub(r'\s+#[^"\]]*$', "", value)  # a trailing comment
        if value.startswith("[") and value.endswith("]"):
            out[key] = re.findall(r'"((?:[^"\\]|\\.)*)"', value)
        elif value == "[":
            items = []
        elif value.startswith('"') and value.endswith('"'):
            out[key] = value[1:-1]
        else:
            raise RuntimeError("pyproject.toml: [project] {} = {}: not understood by this backend".format(key, value))
    return out


def metadata() -> str:
    """The METADATA (PKG-INFO) text, Metadata-Version 2.1."""
    p = project()
    head = [
        "Metadata-Version: 2.1",
        "Name: " + p["name"],
        "Version: " + _version(),
        "Summary: " + p["description"],
        "Requires-Python: " + p["requires-python"],
    ]
    head += ["Classifier: " + c for c in p.get("classifiers", [])]
    head += ["Requires-Dist: " + d for d in p.get("dependencies", [])]
    with open(os.path.join(HERE, p["readme"]), encoding="utf-8") as f:
        readme = f.read()
    head.append("Description-Content-Type: text/markdown")
    return "\n".join(head) + "\n\n" + readme


def _package_files() -> List[str]:
    """The package's files, relative to HERE, sorted (no caches)."""
    out = []
    for name in sorted(os.listdir(os.path.join(HERE, PACKAGE))):
        if name.endswith(".py") or name == "py.typed":
            out.append(PACKAGE + "/" + name)
    return out


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "{},sha256={},{}".format(path, digest, len(data))


def _names() -> Tuple[str, str]:
    name, version = project()["name"], _version()
    return name, version


# PEP 517 hooks.


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def _write_wheel(wheel_directory: str, files: List[Tuple[str, bytes]]) -> str:
    name, version = _names()
    dist_info = "{}-{}.dist-info".format(name, version)
    files = files + [
        (dist_info + "/METADATA", metadata().encode("utf-8")),
        (
            dist_info + "/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: qcluster_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ]
    record = [_record_line(path, data) for path, data in files] + [dist_info + "/RECORD,,"]
    files.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode("utf-8")))
    filename = "{}-{}-py3-none-any.whl".format(name, version)
    stamp = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")))[:6]
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            info = zipfile.ZipInfo(path, date_time=stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return filename


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    files = []
    for rel in _package_files():
        with open(os.path.join(HERE, rel), "rb") as f:
            files.append((rel, f.read()))
    return _write_wheel(wheel_directory, files)


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """PEP 660: a wheel whose .pth file puts this directory on sys.path."""
    name, _ = _names()
    return _write_wheel(wheel_directory, [("__editable__.{}.pth".format(name), (HERE + "\n").encode("utf-8"))])


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    name, version = _names()
    base = "{}-{}".format(name, version)
    filename = base + ".tar.gz"
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))

    def add(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
        info = tarfile.TarInfo(base + "/" + arcname)
        info.size, info.mtime, info.mode = len(data), mtime, 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel in SDIST_EXTRA + _package_files():
            with open(os.path.join(HERE, rel), "rb") as f:
                add(tar, rel, f.read())
        add(tar, "PKG-INFO", metadata().encode("utf-8"))
    return filename
