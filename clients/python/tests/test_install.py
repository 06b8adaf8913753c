"""`pip install ./clients/python` into a fresh venv works, and `import slimkv` needs no torch."""
import os
import pathlib
import shutil
import subprocess
import sys

PKG = pathlib.Path(__file__).resolve().parents[1]


def test_pip_install_into_fresh_venv_without_torch(tmp_path):
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    # Build isolation fetches setuptools and grpcio-tools; the constraints pin them too.
    env = dict(os.environ, PIP_CONSTRAINT=str(PKG / "constraints.txt"))
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    str(PKG)], check=True, env=env, timeout=600)
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import importlib.util, sys, slimkv, slimkv.aio, slimkv.layouts;"
                          "assert importlib.util.find_spec('torch') is None;"
                          "assert 'torch' not in sys.modules;"
                          "print(slimkv.__version__, slimkv.Client.__name__)"],
                         check=True, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.split() == ["0.1.0", "Client"]
    shutil.rmtree(venv)
