import json
import math

import numpy as np
import pytest
import torch

from ackd_bench.cli import main
from ackd_bench.errors import AckdError
from ackd_bench.methods import BASELINES, build_distiller
from ackd_bench.methods.ctkd import cosine_ramp
from ackd_bench.methods.dkd import dkd_terms
from ackd_bench.methods.vpr import expmap0, poincare_distances


def _np_kl(t_logits, s_logits, T):
    def log_softmax(z):
        z = z / T
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    lt, ls = log_softmax(t_logits), log_softmax(s_logits)
    return float((np.exp(lt) * (lt - ls)).sum(axis=1).mean())


def _out(logits=None, pooled=None):
    out = {}
    if logits is not None:
        out["logits"] = torch.as_tensor(logits, dtype=torch.float32)
    if pooled is not None:
        out["pooled"] = torch.as_tensor(pooled, dtype=torch.float32)
    return out


TARGETS = torch.tensor([0, 2])


def test_kd_hand_value_and_zero_when_logits_agree():
    kd = build_distiller("kd", 3)
    assert kd.temperature == 3.0 and kd.t_squared is False  # reference setup
    # T = 1: log p_t - log p_s = [2, 0, -2] (equal log-partition), so KL = 2 p_t0 - 2 p_t2
    one = build_distiller("kd", 3, {"temperature": 1.0})
    p = np.exp([3, 2, 1]) / np.exp([3, 2, 1]).sum()
    value = one(_out([[1, 2, 3]]), _out([[3, 2, 1]]), TARGETS[:1], 0)["kd"]
    assert value.item() == pytest.approx(2 * p[0] - 2 * p[2], rel=1e-5)
    s, t = np.array([[1.0, 2, 3], [0, -1, 4]]), np.array([[3.0, 2, 1], [1, 1, 1]])
    assert kd(_out(s), _out(t), TARGETS, 0)["kd"].item() == pytest.approx(_np_kl(t, s, 3.0), rel=1e-5)
    assert kd(_out(t), _out(t), TARGETS, 0)["kd"].item() == pytest.approx(0.0, abs=1e-7)


def test_rkd_hand_distance_term_and_scale_invariance():
    rkd = build_distiller("rkd", 3, {"angle_weight": 0.0})
    s = np.array([[0.0, 0], [1, 0], [0, 1]])
    t = np.array([[0.0, 0], [2, 0], [0, 1]])
    ds = np.array([[0, 1, 1], [1, 0, math.sqrt(2)], [1, math.sqrt(2), 0]])
    dt = np.array([[0, 2, 1], [2, 0, math.sqrt(5)], [1, math.sqrt(5), 0]])
    ds, dt = ds / ((2 + math.sqrt(2)) / 3), dt / ((3 + math.sqrt(5)) / 3)
    diff = np.abs(ds - dt)
    smooth_l1 = np.where(diff < 1, 0.5 * diff**2, diff - 0.5).mean()
    value = rkd(_out(pooled=s), _out(pooled=t), TARGETS, 0)["rkd_distance"]
    assert value.item() == pytest.approx(0.1 * 25 * smooth_l1, rel=1e-4)
    full = build_distiller("rkd", 3)
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(6, 16)), rng.normal(size=(6, 16))
    base = sum(full(_out(pooled=s), _out(pooled=t), TARGETS, 0).values())
    scaled = sum(full(_out(pooled=7.5 * s), _out(pooled=0.2 * t), TARGETS, 0).values())
    assert scaled.item() == pytest.approx(base.item(), rel=1e-4)


def test_dkd_terms_sum_to_the_kd_decomposition():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(5, 6)) * 3, rng.normal(size=(5, 6)) * 3
    targets = torch.tensor([0, 5, 2, 2, 1])
    for T in (1.0, 4.0):
        tckd, nckd = dkd_terms(torch.tensor(s), torch.tensor(t), targets, T)
        p_t = np.exp(t / T) / np.exp(t / T).sum(axis=1, keepdims=True)
        p_t_gt = p_t[np.arange(5), targets.numpy()]
        # per-sample KL = TCKD + (1 - p_t[gt]) * NCKD; check the batch mean of the per-sample identity
        per_sample_kl = []
        for i in range(5):
            per_sample_kl.append(_np_kl(t[i:i + 1], s[i:i + 1], T))
        t_i, n_i = zip(*[dkd_terms(torch.tensor(s[i:i + 1]), torch.tensor(t[i:i + 1]), targets[i:i + 1], T)
                         for i in range(5)])
        for i in range(5):
            assert per_sample_kl[i] == pytest.approx(t_i[i].item() + (1 - p_t_gt[i]) * n_i[i].item(), rel=1e-6)
        assert tckd.item() == pytest.approx(np.mean([x.item() for x in t_i]), rel=1e-6)
        assert nckd.item() == pytest.approx(np.mean([x.item() for x in n_i]), rel=1e-6)


def test_dkd_weights_warmup_and_class_count():
    dkd = build_distiller("dkd", 4)
    s, t = _out([[1.0, 2, 3, 0], [0, 1, 0, 1]]), _out([[2.0, 1, 0, 0], [1, 0, 0, 3]])
    tckd, nckd = dkd_terms(s["logits"], t["logits"], TARGETS, 4.0)
    early, late = dkd(s, t, TARGETS, 1), dkd(s, t, TARGETS, 30)
    assert late["dkd_tckd"].item() == pytest.approx(16 * tckd.item(), rel=1e-6)
    assert late["dkd_nckd"].item() == pytest.approx(16 * 8 * nckd.item(), rel=1e-6)
    assert early["dkd_nckd"].item() == pytest.approx(late["dkd_nckd"].item() / 20, rel=1e-6)  # the second epoch
    with pytest.raises(AckdError, match="at least 3 classes"):
        build_distiller("dkd", 2)


def test_logits_hand_value():
    value = build_distiller("logits", 2)(_out([[1.0, 2.0]]), _out([[3.0, -2.0]]), TARGETS[:1], 0)["logits_mse"]
    assert value.item() == pytest.approx(0.01 * (4 + 16) / 2)


def test_ctkd_ramp_and_reversed_temperature_gradient():
    assert cosine_ramp(0, 5) == 0.0
    assert cosine_ramp(5, 5) == pytest.approx(-1.0) and cosine_ramp(9, 5) == pytest.approx(-1.0)
    assert cosine_ramp(2.5, 5) == pytest.approx(-0.5)
    s, t = _out([[1.0, 2, 3], [0, 2, 1]]), _out([[3.0, 1, 0], [2, 2, 0]])

    def theta_grad(epoch, params=None):
        ctkd = build_distiller("ctkd", 3, params)
        loss = ctkd(s, t, TARGETS, epoch)["ctkd"]
        loss.backward()
        return ctkd.theta.grad.item(), loss

    assert theta_grad(0)[0] == 0.0  # lambda = 0: the temperature is not trained yet
    for params, scaled, tau0 in ((None, False, 1 + 20 / (1 + math.exp(-1))), ({"t_squared": True, "theta_init": 0.0}, True, 11.0)):
        g_late, loss = theta_grad(10, params)
        ctkd = build_distiller("ctkd", 3, params)
        tau = ctkd.tau_min + ctkd.tau_range * torch.sigmoid(ctkd.theta)
        kl = torch.nn.functional.kl_div(torch.log_softmax(s["logits"] / tau, 1), torch.log_softmax(t["logits"] / tau, 1),
                                        reduction="batchmean", log_target=True) * (tau.squeeze() ** 2 if scaled else 1)
        plain = torch.autograd.grad(kl, ctkd.theta)[0]
        assert g_late == pytest.approx(-plain.item(), rel=1e-5)  # reversed exactly once
        assert loss.item() == pytest.approx(kl.item(), rel=1e-6)
        assert float(ctkd.diagnostics(0)["tau"]) == pytest.approx(tau0, rel=1e-6)


def test_lskd_is_invariant_to_logit_shift_and_scale():
    lskd = build_distiller("lskd", 4)
    rng = np.random.default_rng(2)
    s, t = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    base = lskd(_out(s), _out(t), TARGETS, 0)["lskd"].item()
    moved = lskd(_out(4 * s - 3), _out(0.5 * t + 10), TARGETS, 0)["lskd"].item()
    assert moved == pytest.approx(base, rel=1e-4)
    z = (s - s.mean(1, keepdims=True)) / (s.std(1, ddof=1, keepdims=True) + 1e-7)
    zt = (t - t.mean(1, keepdims=True)) / (t.std(1, ddof=1, keepdims=True) + 1e-7)
    assert base == pytest.approx(_np_kl(zt, z, 3.0) * 9, rel=1e-4)


def test_vpr_geometry_and_identity():
    c = 0.1
    y = torch.tensor([[0.3, 0.4]])
    origin = torch.zeros(1, 2)
    expected = 2 / math.sqrt(c) * math.atanh(math.sqrt(c) * 0.5)  # d(0, y) on the ball
    assert poincare_distances(origin, y, c).item() == pytest.approx(expected, rel=1e-5)
    v = torch.tensor([[3.0, 4.0]])
    assert expmap0(v, c).norm().item() == pytest.approx(math.tanh(math.sqrt(c) * 5) / math.sqrt(c), rel=1e-5)
    vpr = build_distiller("vpr", 3)
    pooled = np.random.default_rng(3).normal(size=(6, 32))
    terms = vpr(_out(pooled=pooled), _out(pooled=pooled), TARGETS, 0)
    assert set(terms) == {"vpr_euclidean", "vpr_cosine", "vpr_geodesic", "vpr_rkdg"}
    assert all(v.item() == pytest.approx(0.0, abs=1e-5) for v in terms.values())
    other = vpr(_out(pooled=pooled), _out(pooled=pooled[::-1].copy()), TARGETS, 0)
    assert sum(other.values()).item() > 1e-3


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_gradients_are_finite_for_extreme_logits(name):
    distiller = build_distiller(name, 5)
    student = {"logits": (torch.tensor([[1e4, -1e4, 0, 5, 3], [-3e3, 2e3, 1, 1, 1]])).requires_grad_(),
               "pooled": (torch.randn(2, 512) * 1e3).requires_grad_()}
    teacher = {"logits": torch.tensor([[-1e4, 1e4, 0, 0, 0], [0.0, 0, 0, 0, 0]]), "pooled": torch.randn(2, 512)}
    loss = sum(distiller(student, teacher, torch.tensor([0, 1]), 3).values())
    loss.backward()
    assert torch.isfinite(loss)
    used = [student[k].grad for k in distiller.teacher_outputs]
    assert used and all(g is not None and torch.isfinite(g).all() for g in used)


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_each_method_trains_a_smoke_epoch_through_the_cli(method, mini_teacher, mini_toy, tmp_path, capsys):
    out = tmp_path / method
    code = main(["train-student", str(mini_toy), "--arch", "S", "--method", method, "--teacher", str(mini_teacher),
                 "--profile", "smoke", "--epochs", "1", "--out", str(out), "--quiet"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == method and result["kd_loss"] == method and result["teacher"] == "S"
    assert 0.0 <= result["oa"] <= 1.0
    header, row = (out / "log.csv").read_text().splitlines()[:2]
    values = dict(zip(header.split(","), row.split(",")))
    assert all(math.isfinite(float(values[k])) for k in values if k.startswith("train_"))
    assert f"{out}: test OA" in capsys.readouterr().out


def test_kd_method_needs_a_teacher(mini_toy, tmp_path, capsys):
    assert main(["train-student", str(mini_toy), "--method", "kd", "--out", str(tmp_path / "x")]) == 2
    assert "pass --teacher CHECKPOINT" in capsys.readouterr().err


def test_unknown_method(mini_toy, tmp_path, capsys):
    assert main(["train-student", str(mini_toy), "--method", "fitnet", "--out", str(tmp_path / "x")]) == 2
    assert "unknown distillation method 'fitnet'" in capsys.readouterr().err


def test_a_built_in_methods_defaults_live_in_its_yaml_only():
    """#36: each parameter's default is written once, in baselines/<name>.yaml (which the config hash
    and the docs cite); the constructors take every parameter by name, with no default of their own."""
    import inspect

    from ackd_bench.methods import load_method_defaults
    from ackd_bench.methods.registry import distiller_class

    for name in BASELINES:
        parameters = inspect.signature(distiller_class(name).__init__).parameters
        own = {k: p for k, p in parameters.items() if k not in ("self", "num_classes")}
        assert set(own) == set(load_method_defaults(name)["params"]), name
        assert all(p.default is inspect.Parameter.empty and p.kind is p.KEYWORD_ONLY for p in own.values()), name
