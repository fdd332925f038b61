"""`options.protocol`: what teachers, students and the matcher fit on, select their epoch on and
report (`heldout`: train / val / test; `reference`, the paper's code: train+val / test / test), and
results and boards that never mix the two."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ackd_bench.data.dataset import ShardDataset
from ackd_bench.data.manifest import pixel_bytes, read_manifest
from ackd_bench.errors import AckdError, DatasetError
from ackd_bench.leaderboard.board import known_versions, read_board, submit
from ackd_bench.leaderboard.render import build_table, load_paper, render
from ackd_bench.leaderboard.site import site_page
from ackd_bench.leaderboard.summary import method_iqm, sembridge_improvement
from ackd_bench.results import RESULT_FIELDS, Record, read_result, run_key
from ackd_bench.train import api
from ackd_bench.train.profiles import load_profile
from ackd_bench.train.request import RunRequest

REFERENCE = ("--set", "options.protocol=reference")


def _samples(root, modality, *splits):
    manifest = read_manifest(root)
    return sum(e.samples for s in splits for e in manifest.entries(modality, s))


def test_a_combined_split_holds_its_splits_in_order_with_the_train_statistics(mini_toy):
    train, val, test = (ShardDataset(mini_toy, "rgb", s) for s in ("train", "val", "test"))
    both = ShardDataset(mini_toy, "rgb", "train+val")
    assert len(both) == len(train) + len(val) == _samples(mini_toy, "rgb", "train", "val")
    assert both.labels.tolist() == train.labels.tolist() + val.labels.tolist()
    assert both.source_ids() == train.source_ids() + val.source_ids()
    assert np.array_equal(both[0]["image"], train[0]["image"])  # normalised with the train mean and std
    assert np.array_equal(both[len(train)]["image"], val[0]["image"])
    everything = ShardDataset(mini_toy, "rgb", "train+val+test")
    assert len(everything) == len(train) + len(val) + len(test)
    assert everything.source_ids()[-len(test):] == test.source_ids()
    manifest = read_manifest(mini_toy)
    assert pixel_bytes(manifest, "rgb", "train+val") == pixel_bytes(manifest, "rgb", "train") + pixel_bytes(
        manifest, "rgb", "val") > 0
    for name in ("train+dev", "train+train", "", "train+"):
        with pytest.raises(DatasetError) as error:
            ShardDataset(mini_toy, "rgb", name)
        assert str(error.value) == (f"unknown split '{name}': expected one of train, val, test, or several of them "
                                    "joined by + (train+val)")


class _Captured:
    """The splits each task of a run was built with, by role."""

    def __init__(self, monkeypatch):
        self.splits: dict[str, tuple] = {}
        for name, fields in (("ClassifierTask", ("fit", "select")), ("DistillationTask", ("fit", "select", "ms"))):
            monkeypatch.setattr(api, name, self._wrap(getattr(api, name), name, fields))
        from ackd_bench.train import matcher  # train_matcher imports its task when it runs

        monkeypatch.setattr(matcher, "MatcherTask", self._wrap(matcher.MatcherTask, "MatcherTask", ("fit", "select")))

    def _wrap(self, cls, name, fields):
        captured = self

        class Task(cls):
            def __init__(self, first, *datasets, **kwargs):
                captured.splits[name] = {f: (d.split, len(d)) for f, d in zip(fields, datasets)}
                super().__init__(first, *datasets, **kwargs)

        return Task


def test_a_reference_teacher_fits_on_train_val_selects_and_reports_test(mini_toy, tmp_path, cli, monkeypatch):
    captured = _Captured(monkeypatch)
    runs = {}
    for protocol, extra in (("heldout", ()), ("reference", REFERENCE)):
        runs[protocol] = tmp_path / protocol
        done = cli("train-teacher", mini_toy, "--arch", "S", "--profile", "smoke", *extra, "--epochs", "2",
                   "--out", runs[protocol], "--device", "cpu", "--quiet")
        assert done.returncode == 0, done.stderr
        n_fit = _samples(mini_toy, "ms", *(("train",) if protocol == "heldout" else ("train", "val")))
        select = "val" if protocol == "heldout" else "test"
        assert captured.splits["ClassifierTask"] == {"fit": (("train" if protocol == "heldout" else "train+val"), n_fit),
                                                     "select": (select, _samples(mini_toy, "ms", select))}
    configs = {p: json.loads((run / "config.json").read_text()) for p, run in runs.items()}
    assert configs["heldout"]["options"]["protocol"] == "heldout"
    assert configs["reference"]["options"]["protocol"] == "reference"
    assert configs["heldout"]["config_hash"] != configs["reference"]["config_hash"]
    assert configs["reference"]["profile"].startswith("smoke+set-")
    held, ref = (read_result(runs[p]) for p in ("heldout", "reference"))
    assert (held.protocol, ref.protocol) == ("heldout", "reference")
    assert held.n_test == ref.n_test == _samples(mini_toy, "ms", "test")
    # under reference the selection split is the reported one: the reported OA is the best epoch's
    with open(runs["reference"] / "log.csv", newline="") as handle:
        per_epoch = [float(row["val_oa"]) for row in csv.DictReader(handle)]
    assert len(per_epoch) == 2
    assert ref.oa == pytest.approx(max(per_epoch), abs=1e-12) and ref.val_oa == pytest.approx(ref.oa, abs=1e-12)
    assert json.loads((runs["reference"] / "request.json").read_text())["profile"]["options"]["protocol"] == "reference"


def test_reference_students_and_the_matcher_fit_and_select_on_its_splits(mini_toy, mini_teacher, mini_matcher,
                                                                         tmp_path, cli, monkeypatch):
    captured = _Captured(monkeypatch)
    fit = ("train+val", _samples(mini_toy, "rgb", "train", "val"))
    select = ("test", _samples(mini_toy, "rgb", "test"))
    common = ("--arch", "S", "--profile", "smoke", *REFERENCE, "--epochs", "1", "--device", "cpu", "--quiet")
    done = cli("train-student", mini_toy, "--method", "none", "--out", tmp_path / "none", *common)
    assert done.returncode == 0, done.stderr
    assert captured.splits["ClassifierTask"] == {"fit": fit, "select": select}
    # the partners' MS side: the images the teacher trained on (ms_gallery: train, smoke's), or every
    # MS image under `reference` (ms_gallery: all, paper's)
    galleries = {"kd": ((), ("train+val", _samples(mini_toy, "ms", "train", "val"))),
                 "sembridge": (("--set", "options.ms_gallery=all"),
                               ("train+val+test", _samples(mini_toy, "ms", "train", "val", "test")))}
    for method, (extra, gallery) in galleries.items():
        done = cli("train-student", mini_toy, "--method", method, "--teacher", mini_teacher, "--matcher", mini_matcher,
                   "--out", tmp_path / method, *common, *extra)
        assert done.returncode == 0, done.stderr
        assert captured.splits.pop("DistillationTask") == {"fit": fit, "select": select, "ms": gallery}
        record = read_result(tmp_path / method)
        assert record.protocol == "reference" and record.val_oa == pytest.approx(record.oa, abs=1e-12)
    assert read_result(tmp_path / "none").protocol == "reference"
    done = cli("train-matcher", mini_toy, "--out", tmp_path / "matcher", *common)
    assert done.returncode == 0, done.stderr
    assert captured.splits["MatcherTask"] == {"fit": ("train+val", _samples(mini_toy, "ms", "train", "val")),
                                              "select": ("test", _samples(mini_toy, "ms", "test"))}
    assert json.loads((tmp_path / "matcher" / "result.json").read_text())["protocol"] == "reference"


def _record(**changes):
    record = {
        "dataset": "toy", "dataset_version": next(iter(known_versions()["toy"])), "method": "kd", "kd_loss": "kd",
        "sembridge": False, "ablation": "", "teacher": "R", "student": "R", "seed": 0, "profile": "smoke",
        "epochs": 2, "oa": 0.8, "f1": 0.78, "val_oa": 0.81, "val_f1": 0.8, "n_test": 111, "config_hash": "a" * 64,
        "code_version": "0.1.0", "wall_seconds": 12.5, "device": "cpu",
    }
    record.update(changes)
    return record


def test_a_record_or_request_older_than_the_protocol_reads_as_heldout(tmp_path):
    old = _record()  # no protocol field at all
    assert Record.from_dict(old).protocol == "heldout"
    assert Record.from_dict({**old, "protocol": ""}).protocol == "heldout"  # a blank cell of a merged CSV
    assert Record.from_dict({**old, "protocol": "reference"}).protocol == "reference"
    with pytest.raises(ValueError, match="^protocol: 'test' is not one of heldout, reference$"):
        Record.from_dict({**old, "protocol": "test"})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps({**old, **dict.fromkeys(
        ("teacher_sha256", "paper_url", "code_url", "precision"))}))
    assert read_result(tmp_path / "run").protocol == "heldout"
    # a results CSV written before the column existed is still one
    old_csv = tmp_path / "old.csv"
    with open(old_csv, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f for f in RESULT_FIELDS if f != "protocol"], lineterminator="\n")
        writer.writeheader()
        writer.writerow({k: old.get(k, "") for k in writer.fieldnames})
    board = tmp_path / "board.csv"
    assert submit([old_csv], board) == 1
    assert [r.protocol for r in read_board(board)] == ["heldout"]
    assert board.read_text().split("\n", 1)[0] == ",".join(RESULT_FIELDS)
    # a request.json recorded before the option existed replays its run as it was: held out
    body = RunRequest.teacher_run("data/toy", "S", profile=load_profile("smoke")).to_json()
    del body["profile"]["options"]["protocol"]
    assert RunRequest.from_json(body, "request.json").profile["options"]["protocol"] == "heldout"
    body["profile"]["options"]["protocol"] = "selection"  # but a value it records is checked
    with pytest.raises(AckdError, match="options.protocol is 'selection': expected one of heldout, reference"):
        RunRequest.from_json(body, "request.json")


def test_a_board_keeps_a_heldout_and_a_reference_run_apart_and_paper_rows_are_reference(tmp_path):
    held = [_record(seed=s, oa=o) for s, o in ((0, 0.80), (1, 0.82), (2, 0.84))]
    ref = [_record(seed=s, oa=o, protocol="reference") for s, o in ((0, 0.90), (1, 0.92), (2, 0.94))]
    results = tmp_path / "results.json"
    results.write_text(json.dumps(held + ref))
    board = tmp_path / "board.csv"
    assert submit([results], board) == 6  # the same run key but for the protocol: no duplicate
    records = read_board(board)
    assert len({run_key(r) for r in records}) == 6
    table = build_table(5, records, datasets=["toy"], with_paper=False)
    rows = dict(table.rows)
    label = "Vanilla KD"
    assert label not in rows  # no row mixes or hides its protocol
    held_row = rows[f"{label} (smoke profile)"]
    assert (held_row[0].text, held_row[0].n) == ("82.0 ± 2.0 (n=3)", 3)
    ref_row = rows[f"{label} (smoke profile, reference protocol)"]
    assert (ref_row[0].text, ref_row[0].n) == ("92.0 ± 2.0 (n=3)", 3)
    assert {d.protocol for d in table.details} == {"heldout", "reference"}
    iqm = {r.label: r for r in method_iqm(records)}
    assert iqm["Vanilla KD"].runs == iqm["Vanilla KD (reference protocol)"].runs == 3
    assert iqm["Vanilla KD (reference protocol)"].interval.estimate == pytest.approx(0.92)
    assert "Vanilla KD (smoke profile, reference protocol)" in site_page(records, datasets=["toy"])
    # SemBridge + KD only under reference: compared with KD under reference, never with held-out KD
    bridged = [Record.from_dict(_record(method="sembridge", sembridge=True, seed=s, oa=0.95, protocol="reference"))
               for s in range(3)]
    assert [(r.label, r.runs, r.interval.estimate) for r in sembridge_improvement(records + bridged)] == [
        ("SemBridge + Vanilla KD over Vanilla KD (reference protocol)", 6, 1.0)]
    # every published number of the paper is of the reference protocol, and says so
    assert {p.protocol for p in load_paper()} == {"reference"}
    paper = build_table(5, [], datasets=["s2s-eu"])
    assert [d.protocol for d in paper.details if d.source == "paper"] and all(
        d.protocol == "reference" and d.label.endswith(" [paper] (reference protocol)")
        for d in paper.details if d.source == "paper")
    assert "| Vanilla KD [paper] (reference protocol) |" in render(paper, "md")
