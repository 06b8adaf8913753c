"""A real slimkvd for the tests, as tests/daemon_process.cc starts one: a temp dir with a config
(listen on 127.0.0.1:0), --ready_file to learn the ports, bounded start-up, SIGTERM at the end."""
from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[3]


def slimkvd_path() -> str:
    path = os.environ.get("SLIMKVD") or str(REPO / "build" / "daemon" / "slimkvd")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"slimkvd not found at {path}: build it (cmake --build build) or set SLIMKVD")
    return path


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Daemon:
    def __init__(self, config: str = ""):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="slimkvd-py-"))
        conf = self.dir / "slimkvd.conf"
        conf.write_text(config + f'\nlisten: "127.0.0.1:0"\nmetrics_listen: "127.0.0.1:0"\n'
                        f'data_dir: "{self.dir}/data"\n')
        ready = self.dir / "ready"
        self.log = open(self.dir / "slimkvd.log", "wb")
        self.proc = subprocess.Popen([slimkvd_path(), f"--config={conf}", f"--ready_file={ready}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            parts = ready.read_text().split() if ready.exists() else []
            if len(parts) >= 2:
                self.port, self.metrics_port = int(parts[0]), int(parts[1])
                self.target = f"127.0.0.1:{self.port}"
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"slimkvd exited at start-up:\n{self.logtext()}")
            time.sleep(0.02)  # polling a file the daemon writes once
        self.stop()
        raise RuntimeError("slimkvd did not become ready within 20 s")

    def logtext(self) -> str:
        return (self.dir / "slimkvd.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
