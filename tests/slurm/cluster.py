"""A one-node Slurm cluster with accounting, started by the tests themselves (no systemd).

Daemons run in the foreground of their own processes, in a temporary state folder, and are
stopped by PID. Needs root (slurmd starts jobs as their user) and Debian's Slurm, MUNGE and
MariaDB packages, which `.ci/run` installs; `missing()` says what is absent instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
KILL_WAIT_S = 10  # SIGTERM to SIGKILL when a job is requeued or cancelled


def missing() -> str | None:
    """Why this machine cannot start the cluster, or None."""
    if os.geteuid() != 0:
        return "the test Slurm cluster needs root"
    absent = [name for name in DAEMONS if shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin")
              is None]
    if absent:
        return f"Slurm packages not installed (no {', '.join(absent)}); .ci/run installs them"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user (the munge package is not installed)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as handle:
        kib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:"))
    return kib // 1024 - 512  # slurmd refuses a node that reports less than the configuration says


class Cluster:
    def __init__(self):
        # not under pytest's 0700 temp folder: munged runs as the munge user and must reach its files
        self.state = Path(tempfile.mkdtemp(prefix="ackd-slurm-"))
        self.state.chmod(0o755)
        self.host = socket.gethostname().split(".")[0]
        self.processes: list[subprocess.Popen] = []
        self.env = {**os.environ, "SLURM_CONF": str(self.state / "slurm.conf"),
                    "PATH": os.environ.get("PATH", "") + ":/usr/sbin"}
        self.values = {"HOST": self.host, "STATE": str(self.state), "CTLD_PORT": _free_port(),
                       "SLURMD_PORT": _free_port(), "DBD_PORT": _free_port(), "CPUS": os.cpu_count() or 1,
                       "MEMORY_MB": _memory_mb(), "KILL_WAIT": KILL_WAIT_S}

    # --- files ---

    def _render(self, template: str, target: Path, mode: int) -> None:
        text = (HERE / template).read_text()
        for key, value in self.values.items():
            text = text.replace(f"@{key}@", str(value))
        target.write_text(text)
        target.chmod(mode)

    def _spawn(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        log = open(self.state / f"{name}.out", "w")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, **kwargs)
        log.close()
        self.processes.append(process)
        return process

    def _wait(self, what: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0].args[0]} exited with {dead[0].returncode} while waiting for {what}; "
                                   f"logs in {self.state}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}; logs in {self.state}")

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=30)

    # --- daemons ---

    def _munge(self) -> None:
        munge = pwd.getpwnam("munge")
        folder = self.state / "munge"
        folder.mkdir(mode=0o700)
        key = folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for path in (folder, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        self._spawn("munged", ["runuser", "-u", "munge", "--", "munged", "--foreground", "--force",
                               f"--key-file={key}", f"--socket={folder / 'munge.socket'}",
                               f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
                               f"--seed-file={folder / 'munged.seed'}"])
        self._wait("munged", (folder / "munge.socket").exists)

    def _mariadb(self) -> None:
        data, sock = self.state / "mariadb", self.state / "mysqld.sock"
        installed = self._run("mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                              "--auth-root-authentication-method=normal", "--skip-test-db")
        if installed.returncode:
            raise RuntimeError(f"mariadb-install-db failed: {installed.stderr.strip()[-500:]}")
        self._spawn("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}",
                                 "--skip-networking", "--user=root", f"--pid-file={self.state / 'mariadbd.pid'}",
                                 f"--log-error={self.state / 'mariadbd.log'}"])
        self.env["MYSQL_UNIX_PORT"] = str(sock)  # slurmdbd's client library finds the socket here
        self._wait("MariaDB", sock.exists)

    def _listening(self, port: int):
        def ready() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0
        return ready

    def _node_idle(self) -> bool:
        states = self._run("sinfo", "-h", "-o", "%T")
        return states.returncode == 0 and states.stdout.strip() == "idle"

    def start(self) -> "Cluster":
        for sub in ("ctld", "slurmd"):
            (self.state / sub).mkdir()
        self._render("slurm.conf.in", self.state / "slurm.conf", 0o644)
        self._render("slurmdbd.conf.in", self.state / "slurmdbd.conf", 0o600)  # slurmdbd refuses a readable one
        self._munge()
        self._mariadb()
        self._spawn("slurmdbd", ["slurmdbd", "-D"])  # reads slurmdbd.conf beside $SLURM_CONF
        self._wait("slurmdbd", self._listening(self.values["DBD_PORT"]))
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait("slurmctld", lambda: self._run("scontrol", "ping").returncode == 0)
        self._spawn("slurmd", ["slurmd", "-D"])
        self._wait("the node to be idle", self._node_idle, timeout=90)
        return self

    def stop(self) -> None:
        """SIGTERM in the reverse order of starting, then SIGKILL to what is left; each by its PID."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        # munged ran under runuser: its PID file names the daemon itself
        pid_file = self.state / "munge" / "munged.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
        shutil.rmtree(self.state, ignore_errors=True)
