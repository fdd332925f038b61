import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ackd_bench import __version__
from ackd_bench.data.dataset import ShardDataset
from ackd_bench.data.manifest import MANIFEST, read_manifest, write_sealed

from .conftest import run_cli


def _one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("ackd-bench: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_build_then_info_then_noop_then_force(tmp_path, cli):
    out = tmp_path / "toy"
    built = cli("build", "toy", "--out", str(out))
    assert built.returncode == 0, built.stderr
    assert "build toy" in built.stderr  # the progress bar
    version = read_manifest(out).dataset_version
    assert f"built toy (version {version[:16]})" in built.stdout

    info = cli("info", str(out))
    assert info.returncode == 0, info.stderr
    for text in ("toy  [SYNTHETIC]", version[:16], "B02 B03 B04 B05 B06 B07 B08 B8A B11 B12", "ms/train",
                 "rgb/test", "HerbaceousVegetation", "48x48 uint16", "48x48 uint8", "samples"):
        assert text in info.stdout
    manifest = read_manifest(out)
    forest_row = next(line for line in info.stdout.splitlines() if line.startswith("Forest "))
    expected = [manifest.counts[m][s]["Forest"] for m in ("ms", "rgb") for s in ("train", "val", "test")]
    assert [int(v) for v in forest_row.split()[1:]] == expected

    mtime = (out / MANIFEST).stat().st_mtime_ns
    again = cli("build", "toy", "--out", str(out))
    assert again.returncode == 0
    assert "already built and verified" in again.stdout and "nothing to do" in again.stdout
    assert (out / MANIFEST).stat().st_mtime_ns == mtime

    forced = cli("build", "toy", "--out", str(out), "--force", "--quiet")
    assert forced.returncode == 0
    assert "built toy" in forced.stdout
    assert read_manifest(out).dataset_version == version  # the build is deterministic


def test_version_and_help(cli):
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"ackd-bench {__version__}"
    helptext = cli("--help").stdout
    assert "build" in helptext and "info" in helptext


def test_info_without_manifest(tmp_path, cli):
    _one_line_error(cli("info", str(tmp_path)), str(tmp_path / MANIFEST), "not found")


def test_info_on_missing_directory(tmp_path, cli):
    _one_line_error(cli("info", str(tmp_path / "nope")), "not a directory")


def test_unknown_dataset_name(tmp_path, cli):
    _one_line_error(cli("build", "s2s-mars", "--out", str(tmp_path)), "unknown dataset 's2s-mars'", "toy")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def toy_copy(toy_dir, tmp_path):
    import shutil

    return shutil.copytree(toy_dir, tmp_path / "toy")


def test_checksum_mismatch(toy_copy, cli):
    shard = toy_copy / "ms-train-00000.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    shard.write_bytes(bytes(data))
    _one_line_error(cli("info", str(toy_copy)), str(shard), "sha256 mismatch")
    # build refuses to treat a damaged build as complete
    _one_line_error(cli("build", "toy", "--out", str(toy_copy)), "sha256 mismatch", "--force")


def test_truncated_shard(toy_copy, cli):
    shard = toy_copy / "rgb-val-00000.h5"
    size = shard.stat().st_size
    with open(shard, "r+b") as handle:
        handle.truncate(size // 3)
    _one_line_error(cli("info", str(toy_copy)), str(shard), "truncated", str(size))


def test_missing_shard(toy_copy, cli):
    (toy_copy / "rgb-test-00000.h5").unlink()
    _one_line_error(cli("info", str(toy_copy)), "rgb-test-00000.h5", "missing")


def test_malformed_manifest(toy_copy, cli):
    (toy_copy / MANIFEST).write_text("{not json")
    _one_line_error(cli("info", str(toy_copy)), str(toy_copy / MANIFEST), "not valid JSON")


def test_manifest_from_another_recipe_needs_force(toy_copy, cli):
    manifest = json.loads((toy_copy / MANIFEST).read_text())
    manifest["recipe_hash"] = "0" * 64
    write_sealed(toy_copy, manifest)  # a sealed build of another recipe version
    _one_line_error(cli("build", "toy", "--out", str(toy_copy)), "another version of recipe 'toy'", "--force")


@pytest.mark.parametrize("kill_when", ["*.partial", "*.h5"], ids=["while-writing", "while-finalising"])
def test_killed_build_leaves_nothing_info_accepts_and_resumes(tmp_path, toy_dir, kill_when, cli):
    out = tmp_path / "toy"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ackd_bench.cli", "build", "toy", "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob(kill_when)):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # killed while finalising, the last shards may already be final: only the manifest marks a finished build
    assert not (out / MANIFEST).exists(), "the build finished before it could be interrupted"
    if kill_when == "*.partial":
        assert list(out.glob("*.partial"))
    _one_line_error(cli("info", str(out)), "not found")

    resumed = cli("build", "toy", "--out", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.glob("*.partial")) and not list(out.glob(".*.writing"))
    assert cli("info", str(out)).returncode == 0
    assert read_manifest(out).dataset_version == read_manifest(toy_dir).dataset_version


def _band_features(dataset):
    images = np.stack([dataset[i]["image"].numpy() for i in range(len(dataset))])
    return np.concatenate([images.mean(axis=(2, 3)), images.std(axis=(2, 3))], axis=1), dataset.labels


def test_toy_is_learnable_and_ms_beats_rgb(toy_dir):
    """A small model (logistic regression on per-band mean/std) does far better on MS than RGB."""
    scores = {}
    for modality in ("ms", "rgb"):
        x_train, y_train = _band_features(ShardDataset(toy_dir, modality, "train"))
        x_test, y_test = _band_features(ShardDataset(toy_dir, modality, "test"))
        model = LogisticRegression(max_iter=3000).fit(x_train, y_train)
        scores[modality] = model.score(x_test, y_test)
    chance = 1 / 6
    assert scores["rgb"] > chance + 0.2  # RGB carries real but partial information
    assert scores["ms"] > 0.9
    assert scores["ms"] > scores["rgb"] + 0.15


def test_manifest_of_an_older_format(toy_copy, cli):
    manifest = json.loads((toy_copy / MANIFEST).read_text())
    manifest["format"] = "ackd-bench-dataset/1"
    (toy_copy / MANIFEST).write_text(json.dumps(manifest))
    _one_line_error(cli("info", str(toy_copy)), "format 'ackd-bench-dataset/1'", "build --force")


def test_parallel_decode_builds_the_same_dataset(toy_dir, tmp_path):
    out = tmp_path / "toy"
    result = run_cli("build", "toy", "--out", str(out), "--workers", "2", "--quiet", "--no-mi")
    assert result.returncode == 0, result.stderr
    assert read_manifest(out).dataset_version == read_manifest(toy_dir).dataset_version


def test_full_disk_is_one_error_and_the_build_resumes(tmp_path, cli):
    """The OS refuses writes past 300 kB (RLIMIT_FSIZE: the same EFBIG/ENOSPC path as a full disk)."""
    import resource

    from ackd_bench.data.manifest import read_manifest

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    out = tmp_path / "toy"
    result = subprocess.run([sys.executable, "-m", "ackd_bench.cli", "build", "toy", "--out", str(out), "--quiet",
                             "--no-mi"], capture_output=True, text=True, preexec_fn=limited, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"ackd-bench: error: {out}/ms-train-00000.h5: cannot write shard (File too large); free disk space and rerun "
        "the build to resume"]
    assert [p.name for p in out.glob(".*")] == [".ackd-build"] and not (out / "manifest.json").exists()
    assert cli("info", str(out)).returncode == 2
    assert cli("build", "toy", "--out", str(out), "--quiet", "--no-mi").returncode == 0
    assert read_manifest(out).dataset_version.startswith("fe42a0804ce174e7")  # toy v3


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_training_refuses_a_bit_flipped_shard_and_hashes_each_shard_once(toy_copy, tmp_path, cli):
    from ackd_bench.data.manifest import verification_stamp, verify_for_training

    verify_for_training(toy_copy)
    shards = read_manifest(toy_copy).shards
    stamps = [verification_stamp(toy_copy / e.file, e.sha256) for e in shards]
    assert all(json.loads(stamp.read_text()) == seen for stamp, seen in stamps)
    assert not list(toy_copy.glob(".*verified*"))  # nothing in the dataset's folder vouches for it
    shard = toy_copy / "rgb-train-00000.h5"
    _flip_a_byte(shard)  # same size: only the hash tells
    args = ["train-student", str(toy_copy), "--arch", "S", "--profile", "smoke", "--quiet"]
    _one_line_error(cli(*args, "--out", str(tmp_path / "run")), str(shard), "sha256 mismatch", "build --force")
    assert not (tmp_path / "run").exists()


def test_a_shard_edited_in_place_with_its_times_set_back_and_a_forged_stamp_is_hashed_again(toy_copy, tmp_path, cli):
    """The old stamp in the dataset's `.verified/` could be forged with the shard; the user's own stamp
    holds the file's ctime, which no `touch` sets back."""
    from ackd_bench.data.manifest import verify_for_training

    verify_for_training(toy_copy)
    shard = toy_copy / "ms-train-00000.h5"
    before = shard.stat()
    _flip_a_byte(shard)
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))
    forged = {"bytes": before.st_size, "mtime_ns": before.st_mtime_ns,
              "sha256": next(e.sha256 for e in read_manifest(toy_copy).shards if e.file == shard.name)}
    (toy_copy / ".verified").mkdir(exist_ok=True)
    (toy_copy / ".verified" / f"{shard.name}.json").write_text(json.dumps(forged))
    assert shard.stat().st_size == before.st_size and shard.stat().st_mtime_ns == before.st_mtime_ns
    _one_line_error(cli("train-teacher", str(toy_copy), "--arch", "S", "--profile", "smoke", "--quiet",
                        "--out", str(tmp_path / "teacher")), str(shard), "sha256 mismatch")
    _one_line_error(cli("mi", str(toy_copy), "--out", str(tmp_path / "mi.json")), str(shard), "sha256 mismatch")
    assert not (tmp_path / "teacher").exists() and not (tmp_path / "mi.json").exists()


@pytest.mark.parametrize("edit,fragment", [
    (lambda m: m["classes"].__setitem__(0, "Woodland"), "counts.ms.train must give a count for each class"),
    (lambda m: m.__setitem__("synthetic", False), "edited after the build"),
    (lambda m: m["counts"]["ms"]["train"].__setitem__("Forest", 1), "edited after the build"),
], ids=["class-renamed", "synthetic-dropped", "count-changed"])
def test_an_edited_manifest_is_caught_by_info_and_training(toy_copy, tmp_path, edit, fragment, cli):
    manifest = json.loads((toy_copy / MANIFEST).read_text())
    edit(manifest)
    (toy_copy / MANIFEST).write_text(json.dumps(manifest, indent=2))
    _one_line_error(cli("info", str(toy_copy)), str(toy_copy / MANIFEST), fragment)
    _one_line_error(cli("train-teacher", str(toy_copy), "--arch", "S", "--profile", "smoke", "--out",
                        str(tmp_path / "run"), "--quiet"), fragment)
    assert not (tmp_path / "run").exists()


def test_an_unsealed_manifest_is_refused_and_a_forced_build_replaces_it(toy_copy, cli):
    manifest = json.loads((toy_copy / MANIFEST).read_text())
    del manifest["manifest_sha256"]  # anyone can write one: the tool only reads what its build sealed
    (toy_copy / MANIFEST).write_text(json.dumps(manifest))
    _one_line_error(cli("info", str(toy_copy)), "not sealed", "build --force")
    _one_line_error(cli("build", "toy", "--out", str(toy_copy), "--no-mi"), "not sealed", "--force")
    assert cli("build", "toy", "--out", str(toy_copy), "--no-mi", "--force").returncode == 0
    assert "manifest_sha256" in json.loads((toy_copy / MANIFEST).read_text())


def test_a_bug_in_the_tool_is_one_line_with_its_traceback_kept_in_the_users_folder(toy_dir, cli, monkeypatch, tmp_path):
    """Round four: bad input gets `ackd-bench: error:` and exit 2; anything else is the tool's bug, said
    so on one line (exit 1) with the traceback in a file, not on the terminal."""
    import ackd_bench.cli as command_line

    def broken(args):
        return {}["no such key"]

    monkeypatch.setattr(command_line, "_cmd_info", broken)
    monkeypatch.setenv("ACKD_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ACKD_BENCH_DEBUG", raising=False)
    result = cli("info", str(toy_dir))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("ackd-bench: internal error (a bug in ackd-bench, not in your input")
    assert "KeyError: 'no such key'" in result.stderr and "Traceback" not in result.stderr
    [saved] = (tmp_path / "home" / "errors").iterdir()
    assert str(saved) in result.stderr
    assert saved.read_text().startswith("Traceback") and "in broken" in saved.read_text()
    monkeypatch.setenv("ACKD_BENCH_DEBUG", "1")  # a developer's switch: the exception itself
    with pytest.raises(KeyError):
        cli("info", str(toy_dir))
