"""The package builds from a clean copy of the repository and works installed from the wheel.

What ``pip install git+URL`` does, offline: the repository's files (no generated code, as
in a fresh clone) are built into a wheel by setup.py's build hook, the wheel is installed
with ``--no-index`` into a folder of its own, and a fresh interpreter outside the
repository imports the gateway and the protobuf code from that folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

BUILD_TIMEOUT_S = 600  # protoc and setuptools on a loaded machine


def _clean_copy(dest: Path) -> None:
    """The files git would clone: tracked ones and new unignored ones (so uncommitted work counts)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_wheel_from_a_clean_checkout_has_protos_and_gateway(tmp_path: Path) -> None:
    src, wheels, site = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    _clean_copy(src)
    assert not (src / "blast_grpc" / "_proto").exists()  # as in a clone: generated code is git-ignored
    # No build isolation: the build requirements (setuptools, grpcio-tools) come from this venv, offline.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(wheels), str(src)], check=True, timeout=BUILD_TIMEOUT_S)
    (wheel,) = wheels.glob("blast_grpc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "blast_grpc/_proto/blast/v1/blast_pb2.py" in names
    assert "blast_grpc/_proto/blast/v1/blast_pb2.pyi" in names
    assert "blast_grpc/_proto/blast/worker/v1/worker_pb2_grpc.py" in names
    assert "blast_grpc_gateway/app.py" in names
    assert not any(n.startswith("gateway/") for n in names), "a generic top-level 'gateway' package"
    assert "blast_grpc/sim/scenarios/" in " ".join(names)  # package data still shipped

    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "-q", "--target", str(site),
                    str(wheel)], check=True, timeout=BUILD_TIMEOUT_S)
    probe = ("import blast_grpc, blast_grpc_gateway, blast_grpc._proto.blast.v1.blast_pb2 as pb;"
             "from blast_grpc_gateway import create_app; create_app('127.0.0.1:1');"
             "print(blast_grpc.__file__); print(blast_grpc_gateway.__file__); print(pb.__file__);"
             "print(pb.DESCRIPTOR.services_by_name['BlastService'].full_name)")
    # From a folder outside the repository, with the wheel's folder first on the path (this venv's
    # editable install of the checkout stays behind it: the assertions below see which one answered).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
                         cwd=tmp_path, env=env, check=True, capture_output=True, text=True, timeout=120).stdout.split()
    assert out[3] == "blast.v1.BlastService"
    for path in out[:3]:
        assert Path(path).is_relative_to(site), f"{path} was not imported from the installed wheel"
