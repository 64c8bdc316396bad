"""Generate the protobuf and gRPC code from ``protos/`` into ``blast_grpc/_proto``.

Run as ``python -m blast_grpc.protogen`` (``make proto`` does). The generated
modules import each other as top-level ``blast.v1`` packages; we rewrite those
imports so the code lives inside our package and never shadows anything.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = Path(__file__).resolve().parent / "_proto"
_IMPORT = re.compile(r"^from blast\.(\S+) import", re.MULTILINE)


def generate() -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc  # imported late: only needed at build time

    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    OUT.mkdir(exist_ok=True)
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        f"--grpc_python_out={OUT}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + ", ".join(files))
    written = []
    for path in OUT.rglob("*.py*"):
        if path.suffix not in (".py", ".pyi"):
            continue
        text = path.read_text()
        new = _IMPORT.sub(r"from blast_grpc._proto.blast.\1 import", text)
        if new != text:
            path.write_text(new)
        written.append(path)
    for folder in [OUT, *[p for p in OUT.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return written


if __name__ == "__main__":
    out = generate()
    print(f"generated {len(out)} files into {OUT.relative_to(ROOT)}", file=sys.stderr)
