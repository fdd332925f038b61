import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ackd_bench.data.build import build_dataset

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # pytest-xdist's workers ignore SIGINT (the controller takes Ctrl-C), and a process started with
    # SIGINT ignored never turns it into KeyboardInterrupt: the Ctrl-C tests' commands would not see
    # the signal a user's terminal sends. Restored here, their children start as from a shell.
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # Workers that train side by side each get their share of the cores, as a launcher gives its runs
    # (threads.default_threads reads OMP_NUM_THREADS; the commands the tests start inherit it): the
    # load average lags, so two trainings starting together would each take every core and spin-wait
    # on each other's (runs 10 to 25 times slower were seen).
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        from ackd_bench.threads import threads_for

        os.environ["OMP_NUM_THREADS"] = str(threads_for(workers))


@pytest.fixture(scope="session", autouse=True)
def _own_home(tmp_path_factory):
    """What the tool keeps in a user's home (a board, verification stamps, bug reports) goes to the
    session's own folder: tests neither read the developer's nor leave anything there."""
    home = tmp_path_factory.mktemp("home")
    previous = os.environ.get("ACKD_BENCH_HOME")
    os.environ["ACKD_BENCH_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("ACKD_BENCH_HOME", None)
    else:
        os.environ["ACKD_BENCH_HOME"] = previous


# the files of longest test time on 2 cores, longest first: xdist hands out files in collection
# order, so these start first and the short ones fill in at the end (longest-first scheduling)
LONGEST_FILES = ("test_slurm.py", "test_acceptance.py", "test_ddp.py", "test_hostile_data.py",
                 "test_sweep_parallel.py", "test_cli_build_info.py", "test_standin.py", "test_device_path.py",
                 "test_outside_methods.py", "test_harness.py", "test_training.py", "test_analyses.py")


def pytest_collection_modifyitems(config, items):
    import torch

    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


REALDATA = REPO.parent / "shared" / "realdata"


def made_once(tmp_path_factory, name: str, make) -> Path:
    """`make(folder)` run once for the whole test run, however many xdist workers share it (they
    wait on a lock in their common temporary folder): the read-only fixtures are built once, not
    once per worker."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    folder, ready = shared / f"shared-{name}", shared / f"shared-{name}.ready"
    with FileLock(str(shared / f"shared-{name}.lock")):
        if not ready.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a make that failed part-way
            folder.mkdir()
            make(folder)
            ready.touch()
    return folder


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory) -> Path:
    """One toy build shared by the read-only tests of the run."""
    return made_once(tmp_path_factory, "toy", lambda root: build_dataset("toy", root, progress=False))


def run_cli(*args: str, timeout: float = 300, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real `ackd-bench` entry point in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "ackd_bench.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@dataclass(frozen=True)
class CliResult:
    """What `main([...])` gave in this process, named as subprocess.CompletedProcess names it."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """`ackd-bench ARGS` in this process: `cli(*args) -> CliResult` (exit status, stdout, stderr).
    Seconds faster than `run_cli`, which stays for what needs a process of its own: signals, the real
    entry point's exit, torchrun, the process's cwd or environment at start-up, a real pipe's encoding.
    Environment variables go through `monkeypatch.setenv`; torch's threads (a run sets them) are
    restored after each call, so a later test is not left with another's thread count."""
    import torch

    from ackd_bench.cli import main

    def call(*args: str) -> CliResult:
        threads = torch.get_num_threads()
        capsys.readouterr()  # what the test printed before is not the command's
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's --help, --version and usage errors end the process
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            torch.set_num_threads(threads)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return call


@pytest.fixture(scope="session")
def teacher_ckpt(toy_dir, tmp_path_factory) -> Path:
    """A ShuffleNetV2 MS teacher trained for a few smoke epochs (shared, read-only)."""
    from ackd_bench.train.api import RunOptions, run
    from ackd_bench.train.request import RunRequest

    run_dir = made_once(tmp_path_factory, "teacher", lambda run_dir: run(
        RunRequest.teacher_run(toy_dir, "S", profile="smoke", overrides={"epochs": 6}),
        RunOptions(run_dir=run_dir, progress=False)))
    return run_dir / "checkpoints" / "best.pt"


def mini_toy_recipe():
    """toy at 32 px with a fifth of its samples."""
    import copy

    from ackd_bench.data.recipe import Recipe, load_recipe

    raw = copy.deepcopy(load_recipe("toy").raw)
    raw["image_size"] = 32
    raw["generator"]["sides"]["ms"]["samples_per_class"] = 24
    raw["generator"]["sides"]["rgb"]["split_counts"] = {"train": 12, "val": 4, "test": 4}
    return Recipe.from_dict(raw, "mini toy")


@pytest.fixture(scope="session")
def mini_toy(tmp_path_factory) -> Path:
    """A toy at 32 px with a fifth of its samples: a few steps per epoch, for tests that run many
    short trainings (the device path, DDP)."""
    return made_once(tmp_path_factory, "mini-toy",
                     lambda root: build_dataset("toy", root, recipe=mini_toy_recipe(), progress=False))


def versions_accepting(dataset_dir: Path, out: Path) -> Path:
    """The board's versions file plus the version of `dataset_dir` (a test's own toy): what a board
    that accepts that build reads."""
    from ackd_bench.data.manifest import read_manifest
    from ackd_bench.leaderboard.board import VERSIONS

    version = read_manifest(dataset_dir).dataset_version
    out.write_text(VERSIONS.read_text().rstrip("\n") + f"\ntoy,{version},a test's own toy\n")
    return out


@pytest.fixture(scope="session")
def mini_teacher(mini_toy, tmp_path_factory) -> Path:
    from ackd_bench.train.api import RunOptions, run
    from ackd_bench.train.request import RunRequest

    run_dir = made_once(tmp_path_factory, "mini-teacher", lambda run_dir: run(
        RunRequest.teacher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 1}),
        RunOptions(run_dir=run_dir, device="cpu", progress=False)))
    return run_dir / "checkpoints" / "best.pt"


@pytest.fixture(scope="session")
def mini_matcher(mini_toy, tmp_path_factory) -> Path:
    from ackd_bench.train.api import RunOptions, run
    from ackd_bench.train.request import RunRequest

    run_dir = made_once(tmp_path_factory, "mini-matcher", lambda run_dir: run(
        RunRequest.matcher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 1}),
        RunOptions(run_dir=run_dir, device="cpu", progress=False)))
    return run_dir / "checkpoints" / "best.pt"


# file name -> bytes to send before dropping the connection, once (an interrupted download)
CUT_AFTER: dict[str, int] = {}
RANGE_REQUESTS: list[tuple[str, str]] = []


@pytest.fixture
def http_server(tmp_path):
    """Serves a directory over HTTP on 127.0.0.1 (a stand-in for the hub), with Range requests as the
    hub's CDN answers them; yields (directory, base URL)."""
    import http.server
    import shutil
    import threading

    served = tmp_path / "served"
    served.mkdir()
    CUT_AFTER.clear()
    RANGE_REQUESTS.clear()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = Path(self.translate_path(self.path))
            if not path.is_file():
                return super().do_GET()
            size = path.stat().st_size
            start = 0
            if self.headers.get("Range"):
                RANGE_REQUESTS.append((path.name, self.headers["Range"]))
                start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            with open(path, "rb") as handle:
                handle.seek(start)
                cut = CUT_AFTER.pop(path.name, None)
                if cut is None:
                    shutil.copyfileobj(handle, self.wfile)
                else:
                    self.wfile.write(handle.read(cut))
                    self.wfile.flush()
                    self.close_connection = True

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`ackd-bench demo` run once (smoke profile, on the mini toy: the tests read its layout, not its
    accuracy) for the tests that read it: (data root, runs root, its table, what it printed). Tests
    that add runs copy the runs root first."""
    import contextlib
    import io

    from ackd_bench.harness.demo import run_demo

    root = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        text = run_demo(root / "data", root / "runs", pair="S/S", profile="smoke", progress=False,
                        recipe=mini_toy_recipe())
    return root / "data", root / "runs", text, printed.getvalue()
