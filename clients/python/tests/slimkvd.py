"""The slimkvd under test (build/daemon/slimkvd, or $SLIMKVD), started per test module or session."""
import os
import pathlib

from slimkv import testing
from slimkv.testing import sha256  # noqa: F401

REPO = pathlib.Path(__file__).resolve().parents[3]


def slimkvd_path() -> str:
    path = os.environ.get("SLIMKVD") or str(REPO / "build" / "daemon" / "slimkvd")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"slimkvd not found at {path}: build it (cmake --build build) or set SLIMKVD")
    return path


def Daemon(config: str = "") -> testing.Daemon:
    return testing.Daemon(slimkvd_path(), config)
