import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # slimkvd.py, model.py

import slimkv  # noqa: E402
from slimkv.testing import DeepSeek, Llama  # noqa: E402
from slimkvd import Daemon  # noqa: E402

# Lossy layers (projected latent, quantizers) keep their representation up to this relative
# error; verify_one_in 1 measures every page, so PutResponse.max_measured_error covers them all.
CONFIG = """
default_policy { mode: MODE_FULL quant: QUANT_NONE error_tolerance: 0.25 }
verify_one_in: 1
"""


@pytest.fixture(scope="session")
def daemon():
    d = Daemon(CONFIG)
    yield d
    d.stop()


@pytest.fixture(scope="session")
def client(daemon):
    with slimkv.Client(daemon.target, deadline=60) as c:
        yield c


@pytest.fixture(scope="session")
def llama_spec():
    return Llama()


def _register(client, spec, tmp_path_factory, name):
    path = spec.write(tmp_path_factory.mktemp(name))
    m = client.register(str(path), page_tokens=16, wait_for_factors=120)
    assert m.factors == "ready", m.factors_detail
    return m


@pytest.fixture(scope="session")
def llama(client, llama_spec, tmp_path_factory):
    return _register(client, llama_spec, tmp_path_factory, "llama")


@pytest.fixture(scope="session")
def deepseek_spec():
    return DeepSeek()


@pytest.fixture(scope="session")
def deepseek(client, deepseek_spec, tmp_path_factory):
    return _register(client, deepseek_spec, tmp_path_factory, "deepseek")


def pytest_sessionstart(session):
    """One line, also under -q, on the engines the suite runs (installed once per machine by
    ops/python-env.sh)."""
    import importlib.metadata as md
    vers = []
    for pkg in ("torch", "transformers"):
        try:
            vers.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            vers.append(f"{pkg} missing")
    line = (f"engines: {', '.join(vers)} from {sys.prefix} (large packages installed once per "
            f"machine by ops/python-env.sh, kept until constraints.txt changes)")
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(line)
