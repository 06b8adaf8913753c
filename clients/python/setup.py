"""Build hook: generates slimkv/v1/*_pb2*.py from the repository's proto/ with grpcio-tools.

The .proto files are read where they live (../../proto); neither they nor the generated code
are copied into git. An sdist is not supported: the package builds from a checkout.
"""
import os
import pathlib

from setuptools import setup

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
PROTOS = ["slimkv/v1/cache.proto", "slimkv/v1/admin.proto", "slimkv/v1/config.proto"]


def generate(out_dir: pathlib.Path) -> None:
    from grpc_tools import protoc  # a build requirement (pyproject.toml)
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    (out_dir / "slimkv" / "v1").mkdir(parents=True, exist_ok=True)
    for proto in PROTOS:
        if not (PROTO_ROOT / proto).exists():
            raise RuntimeError(f"{PROTO_ROOT / proto} not found: build slimkv from a SlimKV checkout")
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}"] + [str(PROTO_ROOT / p) for p in PROTOS]
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed on " + " ".join(PROTOS))
    (out_dir / "slimkv" / "v1" / "__init__.py").write_text(
        '"""Generated from proto/slimkv/v1 by setup.py at build time; do not edit."""\n')


# Generated before setup() runs so that every command (metadata, wheel, editable) sees the
# package slimkv.v1; into the source tree, which git ignores.
generate(HERE)
setup()
