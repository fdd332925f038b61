import os
import subprocess
import sys
from pathlib import Path

import pytest

from ackd_bench.data.build import build_dataset

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory) -> Path:
    """One toy build shared by the read-only tests of the session."""
    root = tmp_path_factory.mktemp("toy")
    build_dataset("toy", root, progress=False)
    return root


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `ackd-bench` entry point in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ackd_bench.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="session")
def teacher_ckpt(toy_dir, tmp_path_factory) -> Path:
    """A ShuffleNetV2 MS teacher trained for a few smoke epochs (shared, read-only)."""
    from ackd_bench.train.api import RunOptions, train_classifier

    run_dir = tmp_path_factory.mktemp("teacher")
    train_classifier(toy_dir, "S", role="teacher", profile="smoke", overrides={"epochs": 6},
                     options=RunOptions(run_dir=run_dir, progress=False))
    return run_dir / "checkpoints" / "best.pt"


@pytest.fixture
def http_server(tmp_path):
    """Serves a directory over HTTP on 127.0.0.1 (a stand-in for the hub); yields (directory, base URL)."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))

    class Quiet(handler.func):  # no request log on stderr
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
