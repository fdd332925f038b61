"""Benchmarks and teachers through the Hugging Face hub: huggingface_hub's real client against a
local server on 127.0.0.1 that answers the hub endpoints it calls (tests/hub_server.py)."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from ackd_bench.data.manifest import read_manifest
from ackd_bench.errors import AckdError
from ackd_bench.hub import licence_check, parse_repo
from ackd_bench.provenance import sha256_file

from .hub_server import FakeHub


@pytest.fixture
def hub(tmp_path):
    with FakeHub() as server:
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": "hf_test",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "HF_HUB_ETAG_TIMEOUT": "30",
               "PYTHONUNBUFFERED": "1"}
        yield server, env


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "ackd_bench.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_build_publish_download_and_train_through_the_hub(mini_toy, tmp_path, hub):
    server, env = hub
    published = cli(env, "publish", str(mini_toy), "--repo", "ackd/toy")
    assert published.returncode == 0, published.stderr
    manifest = read_manifest(mini_toy)
    tag = f"v-{manifest.dataset_version[:16]}"
    repo = server.repos[("dataset", "ackd/toy")]
    sha, files = repo.files(tag)
    assert {e.file for e in manifest.shards} | {"manifest.json", "DATASET.md", "README.md", "croissant.json"} == set(files)
    card = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert card["license"] == "cc0-1.0" and card["task_categories"] == ["image-classification"]
    assert card["ackd_bench"]["dataset_version"] == manifest.dataset_version
    croissant = json.loads(files["croissant.json"])
    assert croissant["conformsTo"] == "http://mlcommons.org/croissant/1.0" and len(croissant["distribution"]) == len(manifest.shards)

    shard = manifest.shards[0].file
    server.cut_after[shard] = 1000  # the first transfer of this shard drops after 1000 bytes
    local = tmp_path / "from-hub"
    pulled = cli(env, "build", "toy", "--from-hub", f"ackd/toy@{tag}", "--out", str(local), "--quiet")
    assert pulled.returncode == 0, pulled.stderr
    assert read_manifest(local) == manifest
    transfers = [r for method, path, r in server.requests if method == "GET" and path.endswith(f"/{shard}")]
    assert len(transfers) == 2  # the dropped transfer was fetched again, and what arrived is whole (checked above)
    assert all(sha256_file(local / e.file) == e.sha256 for e in manifest.shards)

    teacher_run = tmp_path / "teacher"
    trained = cli(env, "train-teacher", str(local), "--arch", "S", "--profile", "smoke", "--epochs", "1",
                  "--out", str(teacher_run), "--quiet")
    assert trained.returncode == 0, trained.stderr
    shared = cli(env, "publish", str(teacher_run), "--repo", "ackd/toy-teacher-s")
    assert shared.returncode == 0, shared.stderr
    model_files = server.repos[("model", "ackd/toy-teacher-s")].files("main")[1]
    assert {"best.pt", "config.json", "result.json", "README.md"} == set(model_files)
    student_run = tmp_path / "student"
    distilled = cli(env, "train-student", str(local), "--arch", "S", "--method", "kd", "--profile", "smoke",
                    "--epochs", "1", "--teacher", "hf://ackd/toy-teacher-s/best.pt", "--out", str(student_run), "--quiet")
    assert distilled.returncode == 0, distilled.stderr
    config = json.loads((student_run / "config.json").read_text())
    assert config["teacher_sha256"] == sha256_file(teacher_run / "checkpoints" / "best.pt")


@pytest.mark.parametrize("answer", [b"{not json", b"[]", b'{"sha": 5, "siblings": "x"}', b'{"id": null}'],
                         ids=["not-json", "a-list", "wrong-types", "no-sha"])
def test_a_malformed_hub_answer_is_one_line(mini_toy, tmp_path, hub, answer):
    """Round four, class 7: malformed answers of the hub's API ended in tracebacks."""
    server, env = hub
    assert cli(env, "publish", str(mini_toy), "--repo", "ackd/toy").returncode == 0
    server.api_answer = answer
    local = tmp_path / "from-hub"
    pulled = cli(env, "build", "toy", "--from-hub", "ackd/toy", "--out", str(local), "--quiet")
    assert pulled.returncode == 2 and pulled.stderr.count("\n") == 1, pulled.stderr
    assert pulled.stderr.startswith("ackd-bench: error: downloading the hub's dataset ackd/toy: "), pulled.stderr
    assert not local.exists()


def test_a_damaged_shard_on_the_hub_never_reaches_a_dataset_directory(mini_toy, tmp_path, hub):
    server, env = hub
    assert cli(env, "publish", str(mini_toy), "--repo", "ackd/toy").returncode == 0
    _, files = server.repos[("dataset", "ackd/toy")].files("main")
    shard = read_manifest(mini_toy).shards[1].file
    files[shard] = files[shard][:-1] + bytes([files[shard][-1] ^ 1])  # one flipped bit, same size
    local = tmp_path / "from-hub"
    pulled = cli(env, "build", "toy", "--from-hub", "ackd/toy", "--out", str(local), "--quiet")
    lines = pulled.stderr.strip().splitlines()
    assert pulled.returncode == 2 and len(lines) == 1 and f"the hub's ackd/toy: {shard}: sha256 mismatch" in lines[0], pulled.stderr
    assert not local.exists() and not (tmp_path / "from-hub.partial").exists()
    wrong = cli(env, "build", "s2s-eu", "--from-hub", "ackd/toy", "--out", str(tmp_path / "eu"), "--quiet")
    assert wrong.returncode == 2 and "holds the toy benchmark, not s2s-eu" in wrong.stderr


def test_a_source_that_may_not_be_redistributed_is_refused_by_name():
    sources = {"ms": {"name": "EuroSAT", "licence": "MIT"},
               "rgb": {"name": "NWPU-RESISC45", "licence": "research use (NWPU-RESISC45 terms)"}}
    with pytest.raises(AckdError, match=r"the rgb side's source NWPU-RESISC45 is licensed 'research use \(NWPU-RESISC45 "
                                        r"terms\)', which does not allow redistribution"):
        licence_check(sources, allow_restricted=False)
    assert licence_check(sources, allow_restricted=True) == ["mit", "other"]
    assert parse_repo("org/name@v-1") == ("org/name", "v-1")
    with pytest.raises(AckdError, match="expected ORG/NAME"):
        parse_repo("just-a-name")
