#!/usr/bin/env python
"""Regenerate ``port/formats/proto/caffe_pb2.py`` from ``port/formats/proto/caffe.proto``.

Usage::

    python port/formats/proto/generate.py           # rewrite caffe_pb2.py
    python port/formats/proto/generate.py --check   # exit 1 if caffe_pb2.py is stale

The code generator is ``grpc_tools.protoc`` (pip package ``grpcio-tools``),
so no system ``protoc`` is needed and the output depends only on the
grpcio-tools version.

The schema is staged in a temporary directory as
``fcn_port/port/formats/proto/caffe.proto`` and protoc is run with that directory as
its only include root.  The file name recorded in the generated descriptor is
therefore ``fcn_port/port/formats/proto/caffe.proto`` and not the bare
``caffe.proto`` that pycaffe's own ``caffe_pb2`` registers, so both modules
can be imported into one process.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_SRC = HERE / "caffe.proto"
PB2_DST = HERE / "caffe_pb2.py"

# Path (relative to the protoc include root) under which the schema is
# registered in the protobuf descriptor pool.
PROTO_NAME = "fcn_port/port/formats/proto/caffe.proto"


def _versions() -> tuple[str, str, str]:
    try:
        import google.protobuf
        protobuf_version = google.protobuf.__version__
    except ImportError:  # pragma: no cover - grpcio-tools depends on protobuf
        protobuf_version = "not installed"
    try:
        from importlib.metadata import version
        tools_version = version("grpcio-tools")
    except Exception:  # pragma: no cover
        tools_version = "unknown"
    out = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "--version"],
        check=True, capture_output=True, text=True,
    )
    protoc_version = out.stdout.strip() or out.stderr.strip()
    return protoc_version, tools_version, protobuf_version


def generate(out_file: Path) -> None:
    """Run protoc on the staged schema and write the result to ``out_file``."""
    try:
        from grpc_tools import protoc
    except ImportError:
        sys.exit("grpc_tools not found: pip install grpcio-tools")

    with tempfile.TemporaryDirectory(prefix="fcn_port_proto_") as tmp:
        tmp_path = Path(tmp)
        src_root = tmp_path / "src"
        py_out = tmp_path / "out"
        staged = src_root / PROTO_NAME
        staged.parent.mkdir(parents=True)
        py_out.mkdir()
        shutil.copyfile(PROTO_SRC, staged)

        rc = protoc.main([
            "grpc_tools.protoc",
            f"-I{src_root}",
            f"--python_out={py_out}",
            PROTO_NAME,
        ])
        if rc != 0:
            sys.exit(f"protoc failed with exit status {rc}")

        generated = py_out / PROTO_NAME.replace(".proto", "_pb2.py")
        if not generated.is_file():
            sys.exit(f"protoc did not produce {generated}")
        out_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(generated), str(out_file))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true",
        help="regenerate into a temp dir and exit 1 if it differs from "
             "the committed caffe_pb2.py",
    )
    args = parser.parse_args(argv)

    protoc_version, tools_version, protobuf_version = _versions()
    print(f"protoc: {protoc_version} (grpcio-tools {tools_version})")
    print(f"protobuf runtime: {protobuf_version}")

    if not args.check:
        generate(PB2_DST)
        print(f"wrote {PB2_DST}")
        return 0

    with tempfile.TemporaryDirectory(prefix="fcn_port_proto_check_") as tmp:
        fresh = Path(tmp) / "caffe_pb2.py"
        generate(fresh)
        new = fresh.read_text()
    if not PB2_DST.is_file():
        print(f"{PB2_DST} is missing; run: python port/formats/proto/generate.py")
        return 1
    old = PB2_DST.read_text()
    if old == new:
        print(f"{PB2_DST.name} is up to date")
        return 0
    diff = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"{PB2_DST.name} (committed)",
        tofile=f"{PB2_DST.name} (regenerated)", n=1,
    )
    sys.stdout.writelines(list(diff)[:60])
    print(f"\n{PB2_DST.name} is stale; run: python port/formats/proto/generate.py")
    return 1


if __name__ == "__main__":
    sys.exit(main())
