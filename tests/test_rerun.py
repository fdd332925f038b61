"""`ackd-bench rerun RUN_DIR`: a run replayed from the request its folder records."""

from __future__ import annotations

import json

import pytest

from ackd_bench.cli import main
from ackd_bench.train.profiles import load_profile
from ackd_bench.train.request import REQUEST_FILE, RunRequest, read_request


def test_a_student_is_replayed_from_its_folder_with_the_same_config_and_result(mini_toy, mini_teacher, tmp_path,
                                                                                capsys):
    run = tmp_path / "kd"
    assert main(["train-student", str(mini_toy), "--arch", "S", "--method", "kd", "--teacher", str(mini_teacher),
                 "--profile", "smoke", "--epochs", "1", "--lr", "0.02", "--out", str(run), "--device", "cpu",
                 "--quiet"]) == 0
    recorded = read_request(run)
    assert (recorded.kind, recorded.method, recorded.arch, recorded.overrides) == ("student", "kd", "S",
                                                                                   {"epochs": 1, "lr": 0.02})
    assert recorded.teacher == str(mini_teacher.resolve()) and recorded.dataset == str(mini_toy.resolve())
    assert isinstance(recorded.profile, dict) and recorded.profile["name"] == "smoke"  # the profile as it was
    capsys.readouterr()

    assert main(["rerun", str(run), "--device", "cpu", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ackd-bench: repeated {run} with the same config hash\n")
    first, again = (json.loads((folder / "result.json").read_text()) for folder in (run, tmp_path / "kd-rerun"))
    assert again["config_hash"] == first["config_hash"]
    assert (again["oa"], again["f1"], again["profile"], again["epochs"]) == (first["oa"], first["f1"],
                                                                             first["profile"], first["epochs"])


def test_a_crafted_request_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    body = RunRequest.teacher_run("data/toy", "S", profile=load_profile("smoke")).to_json()
    for change, message in (({"kind": "virus"}, "run kind 'virus'"), ({"overrides": {"epochs": "9; rm"}},
                             "field 'overrides' may only hold numbers"), ({"extra": 1}, "unknown field(s) extra"),
                            ({"ablation": ["ssm", "all"]}, "--ablate all: unknown component"),
                            ({"profile": "/etc/passwd"}, "field 'profile' is missing or not a dict"),
                            ({"overrides": {"epochs": 10**9}}, "field 'overrides' {'epochs': 1000000000}: expected"),
                            ({"profile": {**body["profile"], "name": "<b>x</b>"}}, "profile's name is '<b>x</b>'"),
                            ({"profile": {**body["profile"], "student": {**body["profile"]["student"],
                                                                          "epochs": 10**9}}},
                             "student.epochs 1000000000 / batch_size")):
        (run / REQUEST_FILE).write_text(json.dumps({**body, **change}))
        assert main(["rerun", str(run), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ackd-bench: error: {run / REQUEST_FILE}: ") and message in err and err.count("\n") == 1
    assert main(["rerun", str(tmp_path / "nothing"), "--device", "cpu"]) == 2
    assert "request.json: not found" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"seed": 2**70}, "field 'seed' is 1180591620717411303424: expected a whole number from 0 to 2**32 - 1"),
    ({"seed": -1}, "field 'seed' is -1: expected a whole number from 0 to 2**32 - 1"),
    ({"sembridge": {"heads": 10**9}}, "sembridge.heads is 1000000000: expected a whole number from 1 to 64"),
    ({"sembridge": {"heads": 1e9}}, "sembridge.heads is 1000000000.0: expected a whole number from 1 to 64"),
    ({"sembridge": {"gamma": -3}}, "sembridge.gamma is -3: expected a number from 0.001 to 1000.0"),
    ({"sembridge": {"dynm": [-5, -5, -5]}}, "sembridge.dynm is (-5, -5, -5): expected E0,DELTA,GROWTH"),
    ({"sembridge": {"dynm": [0, 0, 0]}}, "sembridge.dynm is (0, 0, 0): expected E0,DELTA,GROWTH"),
    ({"method_params": {"temperature": "hot"}}, "field 'method_params': methods.kd.temperature is 'hot': expected"),
    ({"method_params": {"temperature": 1e300}}, "methods.kd.temperature is 1e+300: expected a finite number"),
    ({"method_params": {"nonsense": 1}}, "unknown parameter methods.kd.nonsense"),
])
def test_out_of_range_values_in_a_replayed_request_are_one_line(tmp_path, capsys, change, message):
    """Round four, classes 5 and 7: seed 2**70, heads 1e9, a non-numeric method parameter and a DynM
    schedule of negative numbers (which planned re-matches until memory ran out) in a request.json."""
    run = tmp_path / "run"
    run.mkdir()
    body = RunRequest.student_run("data/toy", "S", "sembridge", profile=load_profile("smoke")).to_json()
    if "sembridge" in change:
        change = {"sembridge": {**body["sembridge"], **change["sembridge"]}}
    (run / REQUEST_FILE).write_text(json.dumps({**body, **change}))
    assert main(["rerun", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ackd-bench: error: {run / REQUEST_FILE}: ") and err.count("\n") == 1, err
    assert message in err, err


def test_a_request_naming_a_module_is_refused_before_anything_imports_it(tmp_path, capsys, monkeypatch):
    """Round four, class 3: `module:Class` in a replayed request.json ran the module's import-time code."""
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "payload_module.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('imported')\n")
    monkeypatch.syspath_prepend(str(planted))
    run = tmp_path / "run"
    run.mkdir()
    body = RunRequest.student_run("data/toy", "S", "kd", profile=load_profile("smoke")).to_json()
    for method, message in (("payload_module:Anything", "field 'method' names a module to import ('payload_module:"),
                            ("sembridge+Not A Name", "method 'sembridge+Not A Name': expected teacher, none")):
        (run / REQUEST_FILE).write_text(json.dumps({**body, "method": method}))
        assert main(["rerun", str(run), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ackd-bench: error: {run / REQUEST_FILE}: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "ran").exists()


def test_a_request_recorded_before_ms_bands_existed_replays_the_recipes_bands(tmp_path, capsys):
    from ackd_bench.errors import AckdError
    from ackd_bench.train.profiles import check_options

    run = tmp_path / "run"
    run.mkdir()
    body = RunRequest.teacher_run("data/toy", "S", profile=load_profile("paper")).to_json()
    assert body["profile"]["options"]["ms_bands"] == "reference"
    del body["profile"]["options"]["ms_bands"]  # what runs recorded until then: every one fed the recipe's bands
    (run / REQUEST_FILE).write_text(json.dumps(body))
    assert read_request(run).profile["options"]["ms_bands"] == "recipe"
    body["profile"]["options"]["ms_bands"] = "all"
    (run / REQUEST_FILE).write_text(json.dumps(body))
    assert main(["rerun", str(run), "--device", "cpu"]) == 2
    assert "options.ms_bands is 'all': expected one of reference, recipe" in capsys.readouterr().err
    options = dict(load_profile("bench")["options"])
    del options["ms_bands"]  # only a recorded profile is read with the default; a profile file must name it
    with pytest.raises(AckdError) as refused:
        check_options(options, "p.yaml")
    assert str(refused.value) == "p.yaml: options.ms_bands is missing: expected one of reference, recipe"
