"""Start and stop a live `streamlit run app.py` on loopback: for the browser tests and `python -m attn loadtest`."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .limits import MALLOC_ARENAS

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no server log)"


@contextlib.contextmanager
def streamlit_server(log_path: Path, timeout: float = 60.0):
    """Yield the base URL of a fresh server on a free port; always terminate it afterwards."""
    with running_server(log_path, timeout) as (base, _proc):
        yield base


@contextlib.contextmanager
def running_server(log_path: Path, timeout: float = 60.0, env: dict | None = None):
    """Yield (base URL, process) of a fresh server on 127.0.0.1 and a free port; always stop it afterwards."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",  # the tests need no hot reload; watching the repo (venv included) floods inotify
    ]  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", MALLOC_ARENA_MAX=str(MALLOC_ARENAS)) | (env or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with code {proc.returncode}:\n{_tail(log_path)}")
                try:
                    with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                        if r.status == 200 and r.read().decode().strip() == "ok":
                            break
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit not healthy after {timeout:.0f} s:\n{_tail(log_path)}")
                time.sleep(0.3)
            yield base, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
