"""Generate the Python stubs for protos/ (the only way they are made; never edit them).

    python scripts/gen_protos.py            # rewrite protos/**/_pb2*.py(i)
    python scripts/gen_protos.py --out DIR  # write them under DIR instead (the drift test)

Needs grpcio-tools (the `dev` extra); the board never does. The proto folder is mapped
to the import name `netcut_protos`, so the generated imports resolve to the installed
package without any post-processing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
PACKAGE = "netcut_protos"


def proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Write the generated files for every .proto under out_dir, mirroring protos/."""
    from grpc_tools import protoc
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PACKAGE}={PROTOS}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
        ] + [f"{PACKAGE}/{p.relative_to(PROTOS)}" for p in proto_files()]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed: see the messages above")
        written = []
        for src in sorted((Path(tmp) / PACKAGE).rglob("*.py*")):
            dst = out_dir / src.relative_to(Path(tmp) / PACKAGE)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            written.append(dst)
        return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PROTOS, help="where to write (default: protos/)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
