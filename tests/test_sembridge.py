import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ackd_bench.cli import main
from ackd_bench.data.dataset import ShardDataset, class_galleries
from ackd_bench.methods import build_distiller
from ackd_bench.methods.sembridge.alignment import KnowledgeAlignment
from ackd_bench.methods.sembridge.coral import coral
from ackd_bench.methods.sembridge.matcher import clip_loss
from ackd_bench.methods.sembridge.matching import dynm_match, dynm_schedule, kl_matrix, ssm_match
from ackd_bench.methods.sembridge.planner import AttentionPlan, Planner, cross_modal_plans, reweight
from ackd_bench.models import build_backbone
from ackd_bench.train.api import RunOptions, train_matcher
from ackd_bench.train.engine import Runtime
from ackd_bench.train.matcher import embed, load_matcher
from ackd_bench.train.pairing import SemBridgePairing
from ackd_bench.train.request import RunRequest
from ackd_bench.train.student import StudentModule

CPU = Runtime(device=torch.device("cpu"), progress=False)


@pytest.fixture(scope="session")
def matcher_run(toy_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("matcher")
    train_matcher(RunRequest.matcher_run(toy_dir, "S", profile="smoke", overrides={"epochs": 3}),
                  RunOptions(run_dir=run_dir, progress=False))
    return run_dir


def test_dynm_schedule_follows_eq_12():
    assert dynm_schedule(30, 30, 5, epochs=150) == [30, 60, 95, 135]
    assert dynm_schedule(30, 30, 5, epochs=200) == [30, 60, 95, 135, 180]
    assert dynm_schedule(45, 15, 5, epochs=100) == [45, 60, 80]
    assert dynm_schedule(15, 30, 5, epochs=16) == [15]


def test_matcher_loss_decreases_on_toy(matcher_run):
    rows = (matcher_run / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("train_clip")]) for r in rows[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    result = json.loads((matcher_run / "result.json").read_text())
    assert result["kind"] == "matcher" and 0 <= result["val_top1"] <= 1


def test_clip_loss_prefers_matched_pairs():
    x = F.normalize(torch.randn(8, 16), dim=1)
    matched = clip_loss(x, x + 0.01 * torch.randn(8, 16))
    shuffled = clip_loss(x, x[torch.randperm(8)])
    assert matched < shuffled


def test_ssm_on_toy_agrees_with_brute_force(matcher_run, toy_dir):
    ms, rgb = ShardDataset(toy_dir, "ms", "train"), ShardDataset(toy_dir, "rgb", "train")
    matcher = load_matcher(matcher_run / "checkpoints" / "best.pt", ms.manifest)
    teacher_emb = embed(matcher.embed_ms, ms, CPU)
    student_emb = embed(matcher.embed_rgb, rgb, CPU)
    galleries = class_galleries(ms)
    batched = ssm_match(student_emb, teacher_emb, rgb.labels, galleries, chunk=50)
    for n in range(len(rgb)):  # the reference code's per-sample loop
        candidates = galleries[rgb.labels[n]]
        cos = [F.cosine_similarity(student_emb[n], teacher_emb[k], dim=0).item() for k in candidates]
        assert batched[n] == candidates[int(np.argmax(cos))]
    assert (ms.labels[batched] == rgb.labels).all()


def test_dynm_student_teacher_equals_a_per_sample_loop_on_random_logits():
    rng = np.random.default_rng(0)
    student_logits = torch.tensor(rng.normal(size=(60, 5)) * 3, dtype=torch.float32)
    teacher_logits = torch.tensor(rng.normal(size=(40, 5)) * 3, dtype=torch.float32)
    student_labels = rng.integers(0, 5, size=60)
    galleries = [np.flatnonzero(rng.integers(0, 5, size=40) == c) for c in range(5)]
    galleries = [g if len(g) else np.array([c]) for c, g in enumerate(galleries)]
    batched = dynm_match(student_logits, teacher_logits, student_labels, galleries, gamma=3.0, chunk=7,
                         divergence="student-teacher")
    for n in range(60):
        p_s = F.softmax(student_logits[n] / 3, dim=0)
        kls = [(p_s * (p_s.log() - F.log_softmax(teacher_logits[k] / 3, dim=0))).sum().item()
               for k in galleries[student_labels[n]]]
        assert batched[n] == galleries[student_labels[n]][int(np.argmin(kls))]
    for divergence in ("teacher-student", "student-teacher"):
        omega = kl_matrix(student_logits[:3], teacher_logits[:4], 3.0, divergence)
        assert omega.shape == (3, 4) and (omega >= -1e-6).all()
        assert kl_matrix(student_logits[:2], student_logits[:2], 3.0, divergence).diagonal().abs().max() < 1e-5


def test_multilabel_teacher_sits_in_every_gallery_of_its_labels():
    student_logits = torch.randn(4, 3)
    teacher_logits = torch.randn(3, 3)
    galleries = [np.array([0, 2]), np.array([2]), np.array([1, 2])]  # teacher 2 carries all three labels
    matches = dynm_match(student_logits, teacher_logits, np.array([0, 1, 2, 1]), galleries)
    assert matches[1] == 2 and matches[3] == 2 and matches[0] in (0, 2) and matches[2] in (1, 2)


def test_coral_zero_for_identical_batches_and_hand_value():
    a = torch.randn(6, 3, 8)
    assert coral(a, a).item() == pytest.approx(0.0, abs=1e-7)
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0], [-1.0, 1.0]])
    y = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, -3.0]])
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = ((xc.t() @ xc - yc.t() @ yc) ** 2).mean() / (4 * 2)  # the reference's normalisation
    assert coral(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    big_a, big_b = torch.randn(5, 300), torch.randn(5, 300)  # Gram-trick path equals the d x d one
    ac, bc = big_a - big_a.mean(0), big_b - big_b.mean(0)
    direct = ((ac.t() @ ac - bc.t() @ bc) ** 2).mean() / (4 * 300)
    assert coral(big_a, big_b).item() == pytest.approx(direct.item(), rel=1e-4)


def test_planner_shapes_gradients_and_energy():
    tokens_t = torch.randn(4, 16, 512, requires_grad=True)
    tokens_s = torch.randn(4, 16, 512, requires_grad=True)
    plan = AttentionPlan(512, 8)(tokens_t)
    assert plan.shape == (4, 8, 16)
    torch.testing.assert_close(plan.sum(dim=-1), torch.ones(4, 8))  # attention received sums to 1 per head
    cross_t, cross_s = cross_modal_plans(plan, plan)
    assert cross_t.shape == cross_s.shape == (4, 8, 16)
    planner = Planner(512, 8)
    d_t, d_s = planner(tokens_t, tokens_s)
    assert d_t.shape == d_s.shape == (4, 16, 512)
    torch.testing.assert_close(d_t.mean(1).pow(2).sum(1), tokens_t.mean(1).pow(2).sum(1), rtol=1e-4, atol=1e-4)
    coral(d_t, d_s).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in planner.parameters())
    assert torch.isfinite(tokens_s.grad).all()
    uniform = reweight(tokens_s.detach(), torch.full((4, 8, 16), 1 / 16))
    torch.testing.assert_close(uniform, tokens_s.detach())  # a flat plan changes nothing


def test_each_ot_ablation_removes_exactly_its_term():
    torch.manual_seed(0)
    student = {"logits": torch.randn(4, 6), "pooled": torch.randn(4, 512), "tokens": torch.randn(4, 4, 512)}
    teacher = {"logits": torch.randn(4, 6), "pooled": torch.randn(4, 512), "tokens": torch.randn(4, 4, 512)}
    full = KnowledgeAlignment(True, True, 512, 8)
    assert set(full(student, teacher)) == {"ot1", "ot2"}
    assert set(KnowledgeAlignment(False, True)(student, teacher)) == {"ot2"}
    assert KnowledgeAlignment(False, True).planner is None
    no_ot2 = KnowledgeAlignment(True, False, 512, 8)
    no_ot2.load_state_dict(full.state_dict(), strict=False)
    assert set(no_ot2(student, teacher)) == {"ot1"}
    assert no_ot2(student, teacher)["ot1"] == full(student, teacher)["ot1"]

    backbone = build_backbone("S", 3, 6)
    weights = {"task": 0.3, "kd": 0.4, "ot": 0.3, "ot_scale": 0.01}
    images, targets = torch.randn(4, 3, 48, 48), torch.randint(0, 6, (4,))
    teacher_out = {**teacher, "tokens": torch.randn(4, 4, 512)}
    with_ot = StudentModule(backbone, build_distiller("kd", 6), weights, full).eval()
    without = StudentModule(backbone, build_distiller("kd", 6), weights, None).eval()
    a, b = with_ot(images, targets, teacher_out, 0), without(images, targets, teacher_out, 0)
    assert a["loss"].item() == pytest.approx(b["loss"].item() + 0.003 * (a["ot1"] + a["ot2"]).item(), rel=1e-5)


def test_dynm_flag_and_schedule_in_the_match_table():
    class FakeTask:
        def __init__(self):
            self.module = type("M", (), {"backbone": torch.nn.Linear(1, 1)})()
            self.rt = CPU

    initial = np.array([0, 1])
    frozen = SemBridgePairing(initial, [1, 3], None, [np.array([0, 1])], 3.0, 8)
    assert frozen.for_epoch(1, FakeTask()) is initial and frozen.rematched == []
    state = frozen.state()
    assert np.array_equal(state["pairs"], initial) and state["rematched"] == []


def test_eval_sembridge_runs_on_toy_through_the_cli(mini_toy, mini_teacher, tmp_path, capsys):
    toy_dir = mini_toy
    code = main(["eval", str(toy_dir), "--method", "sembridge", "--pair", "S/S", "--teacher", str(mini_teacher),
                 "--profile", "smoke", "--epochs", "3", "--matcher-epochs", "1", "--matcher-arch", "S",
                 "--dynm", "1,1,0", "--runs-root", str(tmp_path), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "S/S" in out and "sembridge" in out
    run_dir = next(p for p in (tmp_path / "toy").iterdir() if p.name.startswith("student-S-sembridge"))
    result = json.loads((run_dir / "result.json").read_text())
    assert result["sembridge"] is True and result["kd_loss"] == "kd" and 0 <= result["oa"] <= 1
    header = (run_dir / "log.csv").read_text().splitlines()[0].split(",")
    assert {"train_task", "train_kd", "train_ot1", "train_ot2"} <= set(header)
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    pairing = state["task_state"]["pairing"]
    assert pairing["rematched"] == [1, 2]  # (1, 1, 0): epochs 1 and 2 of 3
    rgb, ms = ShardDataset(toy_dir, "rgb", "train"), ShardDataset(toy_dir, "ms", "train")
    assert len(pairing["pairs"]) == len(rgb) and (ms.labels[pairing["pairs"]] == rgb.labels).all()
    assert any(p.name.startswith("matcher-S") for p in (tmp_path / "toy").iterdir())


def test_ablation_through_the_cli_drops_columns(mini_toy, mini_teacher, tmp_path):
    out = tmp_path / "ablated"
    code = main(["train-student", str(mini_toy), "--arch", "S", "--method", "sembridge+lskd", "--teacher",
                 str(mini_teacher), "--ablate", "ssm,ot1", "--profile", "smoke", "--epochs", "1", "--out", str(out),
                 "--quiet"])
    assert code == 0
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    assert "train_ot2" in header and "train_ot1" not in header and "train_lskd" in header
    result = json.loads((out / "result.json").read_text())
    assert result["ablation"] == "ssm,ot1" and result["method"] == "sembridge+lskd"


def test_sembridge_without_matcher_explains(mini_toy, mini_teacher, tmp_path, capsys):
    code = main(["train-student", str(mini_toy), "--arch", "S", "--method", "sembridge", "--teacher", str(mini_teacher),
                 "--out", str(tmp_path / "x")])
    assert code == 2 and "--matcher CHECKPOINT" in capsys.readouterr().err
    code = main(["train-student", str(mini_toy), "--method", "kd", "--teacher", str(mini_teacher), "--ablate", "ssm",
                 "--out", str(tmp_path / "y")])
    assert code == 2
