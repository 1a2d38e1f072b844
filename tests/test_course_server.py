"""`make course` serves the student edition: JupyterLab, started as the Makefile starts it,
answers on localhost and lists every notebook."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyterlab_serves_the_notebooks(tmp_path):
    port, token = _free_port(), secrets.token_hex(8)
    jupyter = Path(sys.executable).parent / "jupyter"
    as_root = ["--allow-root"] if os.geteuid() == 0 else []          # as the Makefile does
    server = subprocess.Popen(
        [str(jupyter), "lab", "student/", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", *as_root],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)})
    url = f"http://127.0.0.1:{port}/api/contents?token={token}"
    try:
        deadline, listing = time.monotonic() + 90, None
        while listing is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    listing = json.load(response)
            except OSError:
                time.sleep(0.5)
        assert listing is not None, "JupyterLab did not answer within 90 s"
        served = {item["name"] for item in listing["content"]}
        on_disk = {p.name for p in (ROOT / "student").glob("*.ipynb")}
        assert on_disk and on_disk <= served
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}",
                                    timeout=10) as response:
            assert response.status == 200 and b"JupyterLab" in response.read()
    finally:
        server.terminate()
        server.wait(timeout=30)
