"""A built dataset, a run folder or a board from someone else cannot make the tool read, write or
delete anything outside its place, and a dataset is what its shards say (issue: paths and data)."""

from __future__ import annotations

import copy
import gc
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from ackd_bench.cli import main
from ackd_bench.data.manifest import MANIFEST, verify_for_training, verify_manifest, write_sealed
from ackd_bench.errors import AckdError, DatasetError
from ackd_bench.provenance import sha256_file
from ackd_bench.train.api import RunOptions, train_classifier
from ackd_bench.train.engine import TrainingError
from ackd_bench.train.request import RunRequest


@pytest.fixture
def dataset(mini_toy, tmp_path) -> Path:
    return Path(shutil.copytree(mini_toy, tmp_path / "ds"))


def manifest_of(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def resealed(root: Path, manifest: dict) -> None:
    """What an attacker does after editing a manifest: the seal is an unkeyed hash, so re-seal it."""
    manifest.pop("manifest_sha256", None)
    write_sealed(root, manifest)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_exit_2(argv: list[str], capsys, *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ackd-bench: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


# --- 1 and 2: names come from files, paths from the user -------------------------------------------

@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_a_shard_entry_naming_a_file_outside_is_neither_read_nor_stamped(dataset, tmp_path, capsys, where):
    home = tmp_path / "home"
    home.mkdir()
    manifest = manifest_of(dataset)
    entry = manifest["shards"][0]
    victim = home / "notes"  # a file whose content the attacker can predict: here, a copy of the shard
    shutil.copyfile(dataset / entry["file"], victim)
    entry["file"] = str(victim) if where == "absolute" else "../home/notes"
    resealed(dataset, manifest)
    before = snapshot(home)
    one_line_exit_2(["info", str(dataset)], capsys, "shard entry 'file'", "expected a plain name")
    with pytest.raises(DatasetError, match="plain name"):
        verify_for_training(dataset)
    assert snapshot(home) == before  # no notes.json stamp beside the victim


def test_a_shard_that_links_out_of_the_dataset_is_refused(dataset, tmp_path):
    outside = tmp_path / "elsewhere.h5"
    shard = dataset / manifest_of(dataset)["shards"][0]["file"]
    shutil.move(shard, outside)
    shard.symlink_to(outside)
    with pytest.raises(DatasetError, match="outside"):
        verify_for_training(dataset)


def test_names_read_from_files_and_options_are_plain_names(dataset, tmp_path, capsys):
    manifest = manifest_of(dataset)
    manifest["dataset"] = "../../x"  # would place its runs outside the runs root
    resealed(dataset, manifest)
    one_line_exit_2(["info", str(dataset)], capsys, "field 'dataset'", "plain name")
    one_line_exit_2(["build", "../../x/evilrecipe", "--out", str(tmp_path / "b")], capsys, "plain name")
    assert not (tmp_path / "b").exists()

    from ackd_bench.harness.plan import RunPlan
    from ackd_bench.harness.sweep import run_sweep
    from ackd_bench.hub import parse_repo, resolve_checkpoint

    with pytest.raises(AckdError, match="--name '../../x': expected a plain name"):
        run_sweep([], RunPlan(options=RunOptions(runs_root=tmp_path / "runs")), name="../../x")
    for spec in ("org/..", "org/name@../x", "../org/name", "org/nam\u0435"):  # the last with a Cyrillic e
        with pytest.raises(AckdError, match="ORG/NAME"):
            parse_repo(spec)
    with pytest.raises(AckdError, match="hf://ORG/REPO/PATH"):
        resolve_checkpoint("hf://org/repo/../../etc/passwd")


# --- 3: a dataset is what its shards say -------------------------------------------------------------

def _rewrite_shard(root: Path, manifest: dict, index: int, edit) -> None:
    entry = manifest["shards"][index]
    with h5py.File(root / entry["file"], "r+") as handle:
        edit(handle)
    entry["sha256"], entry["bytes"] = sha256_file(root / entry["file"]), (root / entry["file"]).stat().st_size


@pytest.mark.parametrize("change,message", [
    ("samples", "has shape"),
    ("labels", "labels must be"),
    ("version", "dataset_version does not match"),
    ("content", "content_sha256 differs"),
])
def test_training_checks_the_dataset_against_its_shards(dataset, change, message):
    manifest = manifest_of(dataset)
    rgb = next(i for i, e in enumerate(manifest["shards"]) if e["modality"] == "rgb" and e["split"] == "train")
    if change == "samples":  # would train on misaligned labels when streamed
        manifest["shards"][rgb]["samples"] += 1
    elif change == "labels":
        def out_of_range(handle):
            handle["labels"][0] = len(manifest["classes"]) + 3
        _rewrite_shard(dataset, manifest, rgb, out_of_range)
    elif change == "version":
        manifest["dataset_version"] = "0" * 64
    else:
        def recontent(handle):
            handle.attrs["content_sha256"] = "f" * 64
        _rewrite_shard(dataset, manifest, rgb, recontent)
    resealed(dataset, manifest)
    with pytest.raises(DatasetError, match=message):
        verify_for_training(dataset)
    with pytest.raises(DatasetError, match=message):
        verify_manifest(dataset)  # what info and publish check


@pytest.mark.parametrize("band_sets,message", [
    (["B02"], "modalities.ms.band_sets is a list, expected dict"),
    ({"virus": ["B02"]}, "modalities.ms.band_sets: unknown band set 'virus'"),
    ({"reference": "B02"}, "modalities.ms.band_sets.reference must be a non-empty list of band names"),
    ({"reference": [3]}, "modalities.ms.band_sets.reference must be a non-empty list of band names"),
    ({"reference": ["B02", "B99"]}, "modalities.ms.band_sets.reference must name distinct stored bands"),
    ({"reference": ["B02"] * 10**5}, "modalities.ms.band_sets.reference must name distinct stored bands"),
])
def test_a_crafted_band_set_is_one_line_and_a_sound_one_selects_its_bands(dataset, band_sets, message, capsys):
    from ackd_bench.data.dataset import ShardDataset
    from ackd_bench.train.runs import load_dataset

    manifest = manifest_of(dataset)
    manifest["modalities"]["ms"]["band_sets"] = band_sets
    resealed(dataset, manifest)
    one_line_exit_2(["info", str(dataset)], capsys, f"{dataset / MANIFEST}: {message}")
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(dataset, "reference")
    manifest["modalities"]["ms"]["band_sets"] = {"reference": ["B04", "B03", "B02"]}
    manifest["modalities"]["rgb"]["band_sets"] = {"reference": ["R"]}
    resealed(dataset, manifest)
    with pytest.raises(DatasetError, match="modalities.rgb.band_sets: only the MS side selects bands"):
        load_dataset(dataset, "reference")
    del manifest["modalities"]["rgb"]["band_sets"]
    resealed(dataset, manifest)
    data = load_dataset(dataset, "reference")
    assert data.ms_bands == ("B04", "B03", "B02") and load_dataset(dataset, "recipe").ms_bands == tuple(
        manifest["modalities"]["ms"]["bands"])  # a set the recipe does not name: every stored band
    stored = data.split("ms", "train").stored_bands
    raw = data.split("ms", "train").reader.read(0)
    assert raw.shape[0] == 3 and (raw == ShardDataset(dataset, "ms", "train").reader.read(0)[
        [stored.index(b) for b in ("B04", "B03", "B02")]]).all()


def test_non_finite_pixels_are_refused_at_build():
    from ackd_bench.data.shards import as_stored

    assert as_stored(np.array([[1.4, 2.0]]), np.uint16, "ok.tif").dtype == np.uint16
    for bad in (np.nan, np.inf):
        with pytest.raises(DatasetError, match="scene_7.tif: non-finite pixel values"):
            as_stored(np.array([[1.0, bad]]), np.uint16, "scene_7.tif")


# --- 4: never delete or overwrite what the tool did not write ----------------------------------------

def test_out_into_a_users_folder_is_refused_and_force_removes_only_the_tools_files(mini_toy, tmp_path):
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    for name, text in (("config.json", "my config"), ("log.csv", "my log"), ("checkpoints/model_v1.bin", "weights")):
        (mine / name).write_text(text)
    before = snapshot(mine)
    for force in (False, True):
        with pytest.raises(TrainingError, match="not a run folder of ackd-bench"):
            train_classifier(RunRequest.teacher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 1}),
                             RunOptions(run_dir=mine, device="cpu", progress=False, force=force))
        assert snapshot(mine) == before

    run = tmp_path / "run"
    options = RunOptions(run_dir=run, device="cpu", progress=False, force=True)
    train_classifier(RunRequest.teacher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 1}), options)
    (run / "checkpoints" / "model_v1.bin").write_text("weights")  # the user's file in the tool's folder
    (run / "notes.txt").write_text("mine")
    train_classifier(RunRequest.teacher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 1}), options)
    assert (run / "checkpoints" / "model_v1.bin").read_text() == "weights" and (run / "notes.txt").exists()
    assert (run / "checkpoints" / "best.pt").exists() and (run / "result.json").exists()


# --- 5: locks on resolved paths; boards through links --------------------------------------------------

def test_two_links_to_one_run_folder_share_its_lock(mini_toy, tmp_path):
    from ackd_bench.train.runs import run_lock

    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with run_lock(real):
        with pytest.raises(TrainingError, match="another process is writing this run"):
            train_classifier(RunRequest.teacher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 1}),
                             RunOptions(run_dir=link, device="cpu", progress=False))


def test_a_linked_board_gets_the_rows_and_boards_sharing_a_folder_keep_their_readmes(tmp_path, capsys):
    from .test_leaderboard import _record, _write_csv

    shared = tmp_path / "shared" / "leaderboard.csv"
    shared.parent.mkdir()
    link = tmp_path / "mine.csv"
    link.symlink_to(shared)
    assert main(["leaderboard", "submit", str(_write_csv(tmp_path / "a.csv", [_record(seed=0)])),
                 "--board", str(link)]) == 0
    assert link.is_symlink() and len(shared.read_text().splitlines()) == 2
    assert (shared.parent / "README.md").exists()  # beside the board it points to

    first_readme = (shared.parent / "README.md").read_text()
    other = shared.parent / "other.csv"
    assert main(["leaderboard", "submit", str(_write_csv(tmp_path / "b.csv", [_record(seed=1), _record(seed=2)])),
                 "--board", str(other)]) == 0
    assert "other.md regenerated" in capsys.readouterr().out
    assert (shared.parent / "README.md").read_text() == first_readme  # the first board's README is its own
    assert (shared.parent / "other.md").read_text() != first_readme


# --- the class, not the instances: random manifests -----------------------------------------------------

NASTY = ["../x", "/etc/passwd", "..", ".", "", "a" * 300, "ms-train-00000.h5", "rgb", "train", "\u202etxt.h5",
         "C:\\x", "~/x", "x/../../y", None, True, -1, 0, 2**63, 1e308, float("nan"), [], {}, [1, 2], {"a": 1}]


def _leaves(value, path=()):
    """Every (path, value) of a JSON value, containers included."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:4]):  # a few entries of the long lists are enough
            yield from _leaves(child, (*path, index))


def _set(document, path, value, delete):
    target = document
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value


def test_random_manifest_mutations_end_in_success_or_one_line(dataset, tmp_path, capsys):
    """info, training's loading and publish's verification on random edits of a manifest (names, paths,
    counts, types, seals): each succeeds or stops in one line with exit 2; no traceback; no file outside
    the dataset folder changes, nor any inside it (verification stamps live in the user's home)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from ackd_bench.data.dataset import ShardDataset
    from ackd_bench.train.runs import load_dataset

    original = manifest_of(dataset)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "notes").write_text("do not touch")
    outside_before = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("ds/")}
    inside_before = snapshot(dataset)
    tried = []

    @settings(max_examples=int(os.environ.get("ACKD_FUZZ_EXAMPLES", 120)), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(manifest=_mutations(original), reseal=st.booleans())
    def check(manifest, reseal):
        if reseal:
            resealed(dataset, manifest)
        else:
            (dataset / MANIFEST).write_text(json.dumps(manifest))
        tried.append(1)
        code = main(["info", str(dataset)])
        err = capsys.readouterr().err.strip()
        assert code in (0, 2) and "Traceback" not in err, err
        assert code == 0 or (len(err.splitlines()) == 1 and err.startswith("ackd-bench: error: ")), err
        for load in (verify_manifest, lambda root: load_dataset(root).manifest):
            try:
                loaded = load(dataset)
            except AckdError as exc:
                assert "\n" not in str(exc)
                continue
            for modality in ("ms", "rgb"):  # what a run reads first: labels, one sample, its statistics
                split = ShardDataset(dataset, modality, "train", manifest=loaded)
                if len(split):
                    assert split[0]["image"].shape[0] == len(split.bands)

    try:
        check()
    finally:
        (dataset / MANIFEST).write_text(json.dumps(original))
    assert len(tried) >= min(100, int(os.environ.get("ACKD_FUZZ_EXAMPLES", 120)))
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("ds/")} == outside_before
    assert snapshot(dataset) == {**inside_before, MANIFEST: (dataset / MANIFEST).read_bytes()}


@pytest.mark.parametrize("column, cell", [("dataset_version", '=HYPERLINK("https://example.org","x")'),
                                          ("seed", "+1"), ("code_version", "@SUM(1)"), ("oa", "-0"),
                                          ("ablation", "\t=1")])
def test_a_board_cell_that_starts_like_a_formula_is_refused_on_every_read(tmp_path, column, cell, cli):
    """Round four, class 4: a shared board's formula cell in a column not checked on read was kept when
    rows were appended and written back unescaped when the board was rewritten."""
    from ackd_bench.leaderboard.board import SubmissionError, read_board, submit
    from ackd_bench.results import RESULT_FIELDS

    from .test_leaderboard import _record, _write_csv

    board = _write_csv(tmp_path / "board.csv", [_record(seed=1), {**_record(seed=2), column: cell}])
    before = board.read_bytes()
    with pytest.raises(SubmissionError, match=rf"board.csv:3: {column}: ") as refused:
        read_board(board)
    if column in ("dataset_version", "seed", "oa"):  # columns whose own check let such a cell through before
        assert "as a spreadsheet formula does" in str(refused.value) or "is outside" in str(refused.value)
    new = tmp_path / "new.json"
    new.write_text(json.dumps(_record(seed=3)))
    with pytest.raises(SubmissionError):
        submit([new], board)
    assert board.read_bytes() == before  # nothing appended to it, nothing rewritten
    shown = cli("leaderboard", "show", "--board", str(board))
    assert shown.returncode == 2 and shown.stderr.count("\n") == 1
    # a candidate row is held to the same rule
    bad = tmp_path / "bad.csv"
    _write_csv(bad, [{**_record(seed=4), column: cell}])
    with pytest.raises(SubmissionError, match=f"{column}: "):
        submit([bad], tmp_path / "fresh.csv")
    assert not (tmp_path / "fresh.csv").exists() and set(RESULT_FIELDS) >= {column}


@pytest.mark.parametrize("damage, message", [
    (lambda text: text.replace("toy", "t\xe9st", 1).encode("latin-1"), "board.csv: not UTF-8 text (byte "),
    (lambda text: text.replace("toy", "x" * 200_000, 1).encode(), "board.csv:2: not a readable CSV row (field larger "),
    (lambda text: text.replace("toy", "t\0y", 1).encode(), "board.csv:"),
], ids=["latin-1", "cell-over-the-field-limit", "nul-byte"])
def test_a_board_that_is_not_text_or_not_csv_is_one_line_and_left_as_it_was(tmp_path, cli, damage, message):
    """Round four, class 7: a non-UTF-8 board and a cell over the csv module's field limit ended in
    tracebacks (on show, and on submit, which reads the board before appending)."""
    from .test_leaderboard import _record, _write_csv

    board = _write_csv(tmp_path / "board.csv", [_record(seed=1)])
    board.write_bytes(damage(board.read_text()))
    before = board.read_bytes()
    new = tmp_path / "new.json"
    new.write_text(json.dumps(_record(seed=3)))
    for args in (("leaderboard", "show", "--board", str(board)), ("leaderboard", "submit", "--board", str(board), str(new)),
                 ("leaderboard", "submit", "--board", str(tmp_path / "fresh.csv"), str(board))):
        done = cli(*args)
        # a rejected submission lists its bad rows, a line each, under its one-line heading
        assert done.returncode == 2 and done.stderr.count("\n") <= 2 and message in done.stderr, (args, done.stderr)
        assert done.stderr.startswith("ackd-bench: error: ") and len(done.stderr) < 600
    assert board.read_bytes() == before and not (tmp_path / "fresh.csv").exists()


@pytest.mark.parametrize("text, message", [
    ('{"seed": 1, "seed": 2}', "key 'seed' appears more than once"),
    ("[" * 5000 + "]" * 5000, "nested deeper than 64 levels"),
    ('{"seed": ' + "9" * 100_000 + "}", "an integer of 100000 digits"),
    ('{"device": "\\ud800"}', "a string holds a lone surrogate"),
    ('{"oa": NaN}', "NaN is not a JSON number"),
])
def test_result_and_request_json_that_no_writer_makes_is_one_line(tmp_path, cli, text, message):
    """Round four, classes 7 and 8: duplicate keys (the last won), deep nesting (RecursionError), a
    100,000-digit integer, a lone surrogate (passed, then failed writing the board)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(text)
    (run / "request.json").write_text(text)
    board = tmp_path / "board.csv"
    for command in (("leaderboard", "submit", str(run / "result.json"), "--board", str(board)),
                    ("rerun", str(run), "--device", "cpu")):
        done = cli(*command)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-500:]
        assert message in done.stderr and len(done.stderr) < 400
    assert not board.exists()


def test_a_build_deletes_only_files_it_wrote(tmp_path, cli):
    """Round four, class 1: `build toy --out DIR --force` deleted a user's manifest.json, DATASET.md,
    *.h5 files and notes, and every build deleted any hidden .*.writing / .*.finalizing file there."""
    from .conftest import mini_toy_recipe

    users = {"manifest.json": '{"name": "another program"}', "DATASET.md": "my notes", "data.h5": "not a shard",
             "notes.txt": "keep me", ".draft.writing": "mine", ".x.finalizing": "mine too"}
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for name, text in users.items():
        (theirs / name).write_text(text)
    for force in ((), ("--force",)):
        done = cli("build", "toy", "--out", str(theirs), "--quiet", "--no-mi", *force)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "not empty and not a dataset folder of ackd-bench" in done.stderr and "nothing was changed" in done.stderr
    assert {p.name: p.read_text() for p in theirs.iterdir()} == users
    # the tool's own folder: a rebuild with --force replaces its files and leaves the user's additions
    from ackd_bench.data.build import build_dataset

    ours = tmp_path / "ours"
    build_dataset("toy", ours, recipe=mini_toy_recipe(), progress=False)
    for name in ("notes.txt", "ms-notes.h5", ".draft.writing"):
        (ours / name).write_text("a user's")
    (ours / ".ms-train-00000.h5.writing").write_text("an interrupted build's")
    build_dataset("toy", ours, recipe=mini_toy_recipe(), progress=False, force=True)
    assert all((ours / name).read_text() == "a user's" for name in ("notes.txt", "ms-notes.h5", ".draft.writing"))
    assert not (ours / ".ms-train-00000.h5.writing").exists() and (ours / "manifest.json").is_file()


def test_an_error_quoting_a_huge_field_stays_short(tmp_path, cli):
    """Round four, class 5: a 50 MB string in a result field came back as a 50 MB error line."""
    from .test_leaderboard import _record

    big = tmp_path / "result.json"
    big.write_text(json.dumps({**_record(), "device": "x" * 5_000_000}))
    done = cli("leaderboard", "submit", str(big), "--board", str(tmp_path / "board.csv"))
    assert done.returncode == 2 and len(done.stderr) < 2200  # the field's check quotes 40 characters of it
    (tmp_path / "runs").mkdir()
    done = cli("compare", "--runs-root", str(tmp_path / "runs"), "--methods", "x" * 5_000_000, "kd")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and len(done.stderr) < 2100
    assert done.stderr.rstrip().endswith("characters in all)")


def test_a_jpeg_declaring_a_decompression_bomb_is_one_line(tmp_path):
    """Round four, class 7: a JPEG header of 60000 x 60000 pixels fired Pillow's bomb guard, uncaught."""
    from PIL import Image

    from ackd_bench.data.shards import SampleRef
    from ackd_bench.data.sources.resisc45 import RESISC45
    from ackd_bench.errors import DatasetError

    folder = tmp_path / "NWPU-RESISC45" / "forest"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "forest_001.jpg")
    source = RESISC45({"bands": ["R", "G", "B"], "class_map": {"Forest": ["forest"]}}, ["Forest"], 8, root=tmp_path,
                      source_dir=tmp_path, download=False)
    path = source.path(SampleRef("resisc45/forest/forest_001.jpg", 0))
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 10  # an 8 x 8 image is then a "bomb", as 60000 x 60000 is at the default guard
    try:
        with pytest.raises(DatasetError, match="declares more pixels than a scene has"):
            source.load(SampleRef("resisc45/forest/forest_001.jpg", 0))
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    assert path.is_file()


@pytest.mark.parametrize("kind", ["external link", "external storage", "virtual dataset"])
def test_a_shard_keeping_its_data_in_other_files_is_refused(dataset, tmp_path, capsys, kind):
    """Round four, class 2: shards whose data lived in other files (external links, external raw
    storage, virtual datasets) passed `info` and training, with pixels read from outside the dataset."""
    manifest = manifest_of(dataset)
    entry = next(e for e in manifest["shards"] if e["modality"] == "rgb" and e["split"] == "train")
    shard = dataset / entry["file"]
    with h5py.File(shard, "r+") as handle:
        labels = handle["labels"][()]  # the other file holds the right values: nothing else gives it away
        del handle["labels"]
        with h5py.File(tmp_path / "other.h5", "w") as other:
            other["labels"] = labels
        (tmp_path / "outside.bin").write_bytes(labels.tobytes())
        if kind == "external link":
            handle["labels"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "labels")
        elif kind == "external storage":
            handle.create_dataset("labels", shape=labels.shape, dtype=labels.dtype,
                                  external=[(str(tmp_path / "outside.bin"), 0, h5py.h5f.UNLIMITED)])
        else:
            layout = h5py.VirtualLayout(shape=labels.shape, dtype=labels.dtype)
            layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "labels", shape=labels.shape)
            handle.create_virtual_dataset("labels", layout)
    entry["bytes"], entry["sha256"] = shard.stat().st_size, sha256_file(shard)
    resealed(dataset, manifest)  # what an attacker does: the seal covers only the shard file
    one_line_exit_2(["info", str(dataset)], capsys, "'labels'", "a shard's data lives in the shard file")
    with pytest.raises(DatasetError, match="a shard's data lives in the shard file"):
        verify_for_training(dataset)


def test_source_trees_hold_regular_files_with_text_names_and_geotiffs_that_are_geotiffs(tmp_path):
    """Round four, classes 2, 6 and 7: a FIFO in a source folder blocked `build`; a non-UTF-8 file name
    ended in a traceback; a GeoTIFF that was really a GDAL VRT read pixels from any file."""
    rasterio = pytest.importorskip("rasterio", reason="rasterio is not installed")
    from PIL import Image

    from ackd_bench.data.sources.folders import _sample_file
    from ackd_bench.data.sources.rasters import read_bands

    folder = tmp_path / "forest"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "ok.jpg")
    assert _sample_file(folder / "ok.jpg") == folder / "ok.jpg"
    os.mkfifo(folder / "blocks.jpg")
    with pytest.raises(DatasetError, match="blocks.jpg: not a regular file"):
        _sample_file(folder / "blocks.jpg")
    odd = folder / os.fsdecode(b"caf\xe9.jpg")
    odd.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"caf\\xe9.jpg: the file name is not UTF-8 text"):
        _sample_file(odd)
    secret = tmp_path / "secret.tif"
    with rasterio.open(secret, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint16") as dst:
        dst.write(np.full((1, 4, 4), 4242, dtype=np.uint16))
    vrt = folder / "scene.tif"
    vrt.write_text(f'<VRTDataset rasterXSize="4" rasterYSize="4"><VRTRasterBand dataType="UInt16" band="1">'
                   f'<SimpleSource><SourceFilename relativeToVRT="0">{secret}</SourceFilename><SourceBand>1</SourceBand>'
                   f'</SimpleSource></VRTRasterBand></VRTDataset>')
    with pytest.raises(DatasetError, match="scene.tif: unreadable GeoTIFF"):
        read_bands(vrt, count=1, size=4, indexes=[1])
    assert read_bands(secret, count=1, size=4, indexes=[1]).max() == 4242  # a real GeoTIFF still reads


def test_a_shard_declaring_more_samples_than_it_can_hold_is_refused_before_allocating(dataset, tmp_path, capsys):
    """Round four, class 5: an 8 MB shard declaring 10^10 gzip-compressed labels made `info`, `mi` and
    training allocate 18.6 GB."""
    manifest = manifest_of(dataset)
    entry = next(e for e in manifest["shards"] if e["modality"] == "rgb" and e["split"] == "train")
    shard = dataset / entry["file"]
    with h5py.File(shard, "r+") as handle:
        del handle["labels"]
        handle.create_dataset("labels", shape=(10**10,), dtype=np.int16, chunks=(1 << 20,), compression="gzip")
    entry["bytes"], entry["sha256"] = shard.stat().st_size, sha256_file(shard)
    resealed(dataset, manifest)
    one_line_exit_2(["info", str(dataset)], capsys, "dataset 'labels' has shape (10000000000,)")
    manifest["shards"][manifest["shards"].index(entry)]["samples"] = 10**10
    resealed(dataset, manifest)
    with pytest.raises(DatasetError):
        verify_for_training(dataset)


def test_a_student_of_a_teacher_in_someone_elses_read_only_folder_writes_and_deletes_nothing_there(
        mini_toy, mini_teacher, tmp_path, cli):
    """Round four, classes 1 and 2: a teacher outside a run folder made a `cache/` in the folder above
    it, deleted a user's file there as stale, failed where that folder was read-only, and a cache
    planted beside a shared teacher was used with nothing binding it to the teacher."""
    shared = tmp_path / "shared"
    (shared / "teachers").mkdir(parents=True)
    teacher = shared / "teachers" / "best.pt"
    shutil.copy(mini_teacher, teacher)
    (shared / "cache").mkdir()
    (shared / "cache" / "teacher-outputs-train-0123456789abcdef-0123456789abcdef.pt").write_bytes(b"a user's file")
    before = snapshot(shared)
    for folder in (shared / "teachers", shared / "cache", shared):
        folder.chmod(0o555)
    try:
        for run in ("a", "b"):  # the second finds the first's outputs in the user's own cache
            done = cli("train-student", str(mini_toy), "--arch", "S", "--method", "kd", "--teacher", str(teacher),
                       "--profile", "smoke", "--epochs", "1", "--quiet", "--out", str(tmp_path / run))
            assert done.returncode == 0, done.stderr
    finally:
        for folder in (shared, shared / "cache", shared / "teachers"):
            folder.chmod(0o755)
    assert snapshot(shared) == before
    from ackd_bench.home import user_home

    assert list((user_home() / "cache").glob("teacher-outputs-train-*.pt"))


def _shard_mutation(handle, target: str, kind: str, n: int) -> None:
    """Replace (or remove) one dataset or attribute of an open shard with a value of the wrong kind."""
    if target.startswith("@"):
        name = target[1:]
        if kind == "removed":
            handle.attrs.pop(name, None)
        else:
            handle.attrs[name] = {"text": "../../etc/passwd", "number": 2**62, "floats": np.full(3, np.nan),
                                  "empty": np.zeros(0), "huge": np.zeros(5_000)}.get(kind, b"\xff\xfe")
        return
    values = {"strings": np.array([b"Forest"] * n, dtype="S6"), "floats": np.full(n, 0.5, np.float32),
              "large": np.full(n, 2**40, np.int64), "negative": np.full(n, -1, np.int16),
              "longer": np.zeros(n + 1, np.int16), "empty": np.zeros(0, np.int16), "matrix": np.zeros((n, 2), np.int16),
              "not-utf8": np.array([b"\xff\xfe/x"] * n, dtype="S4"), "paths": np.array([b"toy/ms/../../../etc/9999999"] * n),
              "unicode": np.array(["toy/ms/Forest/1"] * n, dtype=h5py.string_dtype()),
              "wide-ids": np.array([b"t" * 4000] * n), "uint64": np.full(n, 2**64 - 1, np.uint64)}
    if target in handle:
        del handle[target]
    if kind == "group":
        handle.create_group(target)
    elif kind != "removed":
        handle.create_dataset(target, data=values.get(kind, values["strings"]))


def test_random_shard_structures_end_in_success_or_one_line(dataset, tmp_path, capsys):
    """Round four, classes 5 and 7: labels stored as strings or floats, crafted source ids under `mi`, and
    any dataset or attribute of a shard replaced by one of another type, shape or size (the file resealed,
    as an attacker would): `info`, training's loading and `mi` each succeed or stop in one line with exit
    2; no file changes outside the dataset, and the process stays within a memory cap."""
    import resource

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from ackd_bench.data.dataset import ShardDataset
    from ackd_bench.data.analyses import run_mi
    from ackd_bench.train.runs import load_dataset

    original_manifest = manifest_of(dataset)
    entry = next(e for e in original_manifest["shards"] if e["modality"] == "ms" and e["split"] == "train")
    shard = dataset / entry["file"]
    original = shard.read_bytes()
    with h5py.File(shard, "r") as handle:
        attributes, n = sorted(handle.attrs), handle["labels"].shape[0]
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "notes").write_text("do not touch")
    outside_before = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("ds/")}
    targets = ["labels", "source_ids", "images"] + [f"@{name}" for name in attributes]
    kinds = ["strings", "floats", "large", "negative", "longer", "empty", "matrix", "not-utf8", "paths", "unicode",
             "wide-ids", "uint64", "group", "removed"]
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tried = []

    @settings(max_examples=int(os.environ.get("ACKD_FUZZ_EXAMPLES", 120)) // 3, deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    @given(edits=st.lists(st.tuples(st.sampled_from(targets), st.sampled_from(kinds + ["text", "number", "floats",
                                                                                         "huge"])),
                          min_size=1, max_size=2))
    def check(edits):
        gc.collect()  # the last example's readers (held by its exception's frames) close their files
        shard.write_bytes(original)
        with h5py.File(shard, "r+") as handle:
            for target, kind in edits:
                _shard_mutation(handle, target, kind, n)
        manifest = copy.deepcopy(original_manifest)
        listed = next(e for e in manifest["shards"] if e["file"] == entry["file"])
        listed["bytes"], listed["sha256"] = shard.stat().st_size, sha256_file(shard)
        resealed(dataset, manifest)
        tried.append(edits)
        code = main(["info", str(dataset)])
        err = capsys.readouterr().err.strip()
        assert code in (0, 2) and (code == 0 or (len(err.splitlines()) == 1 and err.startswith("ackd-bench: error: "))), (
            edits, err)
        def first_sample():
            split = ShardDataset(dataset, "ms", "train", manifest=load_dataset(dataset).manifest)
            try:
                return split[0], split.source_ids()
            finally:
                split.reader.close()

        for use in (first_sample, lambda: run_mi(dataset, pairs=4, bins=4, out_dir=tmp_path / "mi-out")):
            try:
                use()
            except AckdError as exc:
                assert "\n" not in str(exc), edits

    try:
        check()
    finally:
        shard.write_bytes(original)
        (dataset / MANIFEST).write_text(json.dumps(original_manifest))
    assert len(tried) >= int(os.environ.get("ACKD_FUZZ_EXAMPLES", 120)) // 3
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(("ds/", "mi-out/"))} == outside_before
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 1024, f"the fuzzed shards raised the process's peak memory by {grown_mib:.0f} MiB"


def test_a_run_with_a_truncated_result_can_be_started_over(mini_toy, tmp_path, cli):
    """Round four, class 7: under --force a truncated result.json stopped the run that would replace it."""
    run = tmp_path / "run"
    args = ["train-teacher", str(mini_toy), "--arch", "S", "--profile", "smoke", "--epochs", "1", "--quiet",
            "--out", str(run)]
    assert cli(*args).returncode == 0
    (run / "result.json").write_text((run / "result.json").read_text()[:60])
    again = cli(*args)
    assert again.returncode == 2 and "pass --force to run it again" in again.stderr
    assert cli(*args, "--force").returncode == 0
    assert json.loads((run / "result.json").read_text())["method"] == "teacher"


def test_a_download_is_cut_off_at_its_files_bound(tmp_path):
    """Round four, class 5: a mirror streaming endless data wrote 8.5 GB for a file documented as 2 GB."""
    import http.server
    import threading

    from ackd_bench.data.sources.fetch import http_download

    class Endless(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            if self.path == "/declares-too-much":
                self.send_header("Content-Length", str(10**12))
            self.end_headers()
            try:
                for _ in range(10**6):  # without a Content-Length: until the client hangs up
                    self.wfile.write(b"\0" * (1 << 16))
            except OSError:
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for path, message in (("/endless", "the server sent more than 1,048,576 bytes"),
                              ("/declares-too-much", "the server offers 1,000,000,000,000 bytes for a file of at most")):
            target = tmp_path / "downloads" / "EuroSAT.zip"
            target.parent.mkdir(exist_ok=True)
            with pytest.raises(DatasetError, match=message):
                http_download(base + path, target, max_bytes=1 << 20)
            assert list(target.parent.iterdir()) == []
    finally:
        server.shutdown()


def test_a_corrupt_chunk_read_by_a_loader_worker_ends_the_run_in_one_line(dataset, tmp_path):
    """Round four, class 6: with --resident off --workers 2, a corrupt chunk printed a worker's traceback
    and the process never exited (its workers ignore SIGTERM, which multiprocessing's exit handler
    sends before joining them). A chunk's bytes are overwritten and the shard resealed."""
    from .conftest import run_cli

    manifest = manifest_of(dataset)
    entry = next(e for e in manifest["shards"] if e["modality"] == "rgb" and e["split"] == "train")
    shard = dataset / entry["file"]
    with h5py.File(shard, "r") as handle:
        chunk = handle["images"].id.get_chunk_info(3)
    data = bytearray(shard.read_bytes())
    data[chunk.byte_offset:chunk.byte_offset + chunk.size] = b"\xab" * chunk.size
    shard.write_bytes(bytes(data))
    entry["bytes"], entry["sha256"] = shard.stat().st_size, sha256_file(shard)
    resealed(dataset, manifest)
    done = run_cli("train-student", str(dataset), "--arch", "S", "--profile", "smoke", "--epochs", "1", "--quiet",
                   "--resident", "off", "--workers", "2", "--out", str(tmp_path / "run"), timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"ackd-bench: error: {shard}: cannot read sample 3: "), done.stderr


def _tree_entry(folder: Path, index: int, kind: str, outside: Path) -> None:
    """One entry of a class folder of a source tree, of a kind a careless or hostile tree may hold."""
    from PIL import Image

    name = folder / f"e{index}.jpg"
    if kind == "jpeg":
        Image.new("RGB", (12, 12), (index * 40 % 256, 80, 120)).save(name)
    elif kind == "png-named-jpg":
        Image.new("RGB", (12, 12)).save(name, format="PNG")
    elif kind == "empty":
        name.write_bytes(b"")
    elif kind == "garbage":
        name.write_bytes(os.urandom(64))
    elif kind == "truncated":
        Image.new("RGB", (64, 64), (10, 200, 30)).save(name)
        name.write_bytes(name.read_bytes()[:200])
    elif kind == "bomb":  # a JPEG header declaring 60000 x 60000 pixels
        Image.new("L", (8, 8)).save(name)
        data = bytearray(name.read_bytes())
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2
        name.write_bytes(bytes(data))
    elif kind == "fifo":
        os.mkfifo(name)
    elif kind == "link-out":
        name.symlink_to(outside)
    elif kind == "dangling":
        name.symlink_to(folder / "nowhere.jpg")
    elif kind == "folder":
        name.mkdir()
    elif kind == "not-utf8":
        (folder / os.fsdecode(b"e%d\xff.jpg" % index)).write_bytes(b"")


def test_random_source_trees_end_in_success_or_one_line(tmp_path):
    """Round four, classes 2, 6 and 7 as a property: class folders holding good JPEGs among FIFOs, links
    out of the tree, dangling links, folders named like images, non-UTF-8 names, empty, garbage,
    truncated and bomb JPEGs. Listing and reading each sample succeeds or stops in one line, never
    blocks, and reads nothing outside the tree (a linked file there holds a marked image)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from PIL import Image

    from ackd_bench.data.sources.resisc45 import RESISC45

    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (12, 12), (255, 0, 255)).save(outside)  # magenta: never a sample of the tree
    kinds = ["jpeg", "png-named-jpg", "empty", "garbage", "truncated", "bomb", "fifo", "link-out", "dangling",
             "folder", "not-utf8"]
    tried = []

    @settings(max_examples=int(os.environ.get("ACKD_FUZZ_EXAMPLES", 120)) // 3, deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    @given(folders=st.lists(st.lists(st.sampled_from(kinds), min_size=1, max_size=4), min_size=2, max_size=2))
    def check(folders):
        source = tmp_path / f"source{len(tried)}"
        for name, entries in zip(("forest", "lake"), folders):
            folder = source / "NWPU-RESISC45" / name
            folder.mkdir(parents=True)
            for index, kind in enumerate(entries):
                _tree_entry(folder, index, kind, outside)
        tried.append(folders)
        spec = {"bands": ["R", "G", "B"], "class_map": {"Forest": ["forest"], "Water": ["lake"]}}
        try:
            reader = RESISC45(spec, ["Forest", "Water"], 8, root=tmp_path / f"root{len(tried)}", source_dir=source,
                              download=False)
            for ref in reader.refs():
                pixels = reader.load(ref)
                assert pixels.shape == (3, 8, 8) and not (pixels[0] > 200).all() & (pixels[1] < 50).all(), ref
        except DatasetError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)

    check()
    assert len(tried) >= int(os.environ.get("ACKD_FUZZ_EXAMPLES", 120)) // 3


def _mutations(original):
    """A hypothesis strategy of edited copies of a JSON-like document: up to three leaves (containers
    included) replaced by a nasty value or deleted."""
    from hypothesis import strategies as st

    paths = [p for p, _ in _leaves(original) if p]
    values = st.one_of(st.sampled_from(NASTY), st.integers(-10, 10**6), st.text(max_size=12),
                       st.lists(st.integers(0, 5), max_size=3), st.just(2**70), st.just("=cmd|' /C calc'!A0"))

    def edited(edits):
        document = copy.deepcopy(original)
        for path, value, delete in edits:
            try:
                _set(document, path, value, delete and isinstance(path[-1], str))
            except (KeyError, IndexError, TypeError):  # an earlier edit removed its parent
                pass
        return document

    return st.lists(st.tuples(st.sampled_from(paths), values, st.booleans()), min_size=1, max_size=3).map(edited)


def _fuzzed(strategy, check, divisor=3):
    from hypothesis import HealthCheck, given, settings

    examples = int(os.environ.get("ACKD_FUZZ_EXAMPLES", 120)) // divisor
    settings(max_examples=examples, deadline=None, derandomize=True, database=None,
             suppress_health_check=list(HealthCheck))(given(strategy)(check))()


def test_random_results_requests_and_checkpoint_metadata_end_in_success_or_one_line(
        mini_toy, mini_teacher, tmp_path, capsys):
    """Round four as properties over the other files users exchange: a result.json submitted to a board,
    a run folder's request.json replayed by `rerun`, and a teacher checkpoint's metadata. Each edit of
    up to three fields ends in success or one line (exit 2); nothing outside the input's folder changes
    except the board a valid submission is meant to reach."""
    import torch

    from ackd_bench.leaderboard.board import read_board
    from ackd_bench.train.checkpoint import CheckpointError
    from ackd_bench.train.profiles import load_profile
    from ackd_bench.train.request import REQUEST_FILE
    from ackd_bench.train.teacher_cache import load_teacher
    from ackd_bench.data.manifest import read_manifest

    from .test_leaderboard import _record

    def one_line_or_success(argv):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code in (0, 2) and "Traceback" not in err, (argv, err)
        lines = err.splitlines()
        # one line; a rejected submission's heading is followed by its one bad row, indented
        assert code == 0 or (err.startswith("ackd-bench: error: ") and (
            len(lines) == 1 or (len(lines) == 2 and "rejected" in lines[0] and lines[1].startswith("  ")))), (argv, err)
        return code

    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "notes").write_text("do not touch")
    before = snapshot(sentinel)

    result = tmp_path / "result" / "result.json"
    result.parent.mkdir()
    board = tmp_path / "board" / "board.csv"

    def submit(document):
        result.write_text(json.dumps(document))
        if one_line_or_success(["leaderboard", "submit", "--board", str(board), str(result)]) == 0:
            assert read_board(board)  # what was accepted reads back
        if board.exists():
            one_line_or_success(["leaderboard", "show", "--board", str(board)])

    _fuzzed(_mutations(_record(seed=1)), submit)

    run = tmp_path / "run"
    run.mkdir()
    request = RunRequest.student_run(str(tmp_path / "no-dataset"), "S", "sembridge", profile=load_profile("smoke"),
                                     teacher=str(mini_teacher)).to_json()

    def replay(document):
        (run / REQUEST_FILE).write_text(json.dumps(document))
        assert one_line_or_success(["rerun", str(run), "--device", "cpu"]) == 2  # its dataset is missing
        assert sorted(p.name for p in run.iterdir()) == [REQUEST_FILE]

    _fuzzed(_mutations(request), replay)

    state = torch.load(mini_teacher, map_location="cpu", weights_only=True)
    metadata = {k: v for k, v in state.items() if k not in ("module", "optimizer", "rng", "scaler")}
    manifest = read_manifest(mini_toy)
    crafted = tmp_path / "teacher" / "best.pt"
    crafted.parent.mkdir()

    def load(document):
        torch.save({**document, "module": state["module"]}, crafted)
        try:
            load_teacher(crafted, manifest)
        except CheckpointError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 2000, str(exc)

    _fuzzed(_mutations(metadata), load, divisor=4)
    assert snapshot(sentinel) == before
