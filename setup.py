"""Build hook: generate the protobuf code while the package is built.

``blast_grpc/_proto`` is not in git (``make proto`` writes it in a checkout), so a wheel
built from a clone (``pip install git+URL``, ``pip wheel .``) would lack it. ``build_py``
here runs ``blast_grpc/protogen.py`` first and adds the generated packages to the build;
grpcio-tools is a build requirement in pyproject.toml for that. protogen.py is loaded
by its path: importing ``blast_grpc`` would need the runtime dependencies, which a build
environment does not have. Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# gateway/ stays at the top of the repository (``python -m gateway`` in a checkout) but is
# installed under the project's own name.
GATEWAY = "blast_grpc_gateway"


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        spec = importlib.util.spec_from_file_location("_blast_protogen", HERE / "blast_grpc" / "protogen.py")
        assert spec is not None and spec.loader is not None
        protogen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(protogen)
        protogen.generate()
        # The package list was computed before the code existed: add the generated packages.
        out = HERE / "blast_grpc" / "_proto"
        generated = [".".join(p.relative_to(HERE).parts) for p in [out, *sorted(out.rglob("*"))]
                     if p.is_dir() and (p / "__init__.py").exists()]
        self.packages = list(dict.fromkeys([*(self.packages or []), *generated]))
        super().run()


setup(
    packages=[*find_namespace_packages(include=["blast_grpc", "blast_grpc.*"], exclude=["blast_grpc._proto*"]), GATEWAY],
    package_dir={GATEWAY: "gateway"},
    cmdclass={"build_py": BuildPyWithProtos},
)
