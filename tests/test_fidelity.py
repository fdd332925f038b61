"""One test per row of docs/FIDELITY.md: each option's reference form (the `paper` profile) against
values computed by hand from the reference code's formula, and its project form (the `bench`
profile) where the two differ."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from ackd_bench.errors import AckdError
from ackd_bench.methods import build_distiller, load_method_defaults
from ackd_bench.methods.sembridge.matcher import Matcher, clip_loss
from ackd_bench.methods.sembridge.matching import dynm_match, kl_matrix
from ackd_bench.models import build_backbone
from ackd_bench.train.api import RunOptions, train_classifier, train_student
from ackd_bench.train.request import RunRequest
from ackd_bench.train.sembridge_run import dynm_epochs, sembridge_defaults
from ackd_bench.train.metrics import multi_label_metrics
from ackd_bench.train.profiles import OPTIONS, load_profile
from ackd_bench.train.student import StudentModule

from .conftest import REALDATA


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_profiles_name_every_option_and_paper_takes_the_reference_value():
    paper, bench = load_profile("paper"), load_profile("bench")
    assert paper["options"] == {name: values[0] for name, values in OPTIONS.items()}
    same = {"loss_precision", "protocol"}  # both report held out: the reference protocol only when asked for
    assert {k for k in OPTIONS if bench["options"][k] != paper["options"][k]} == set(OPTIONS) - same
    assert paper["options"]["protocol"] == "heldout" and OPTIONS["protocol"] == ("heldout", "reference")
    assert load_profile("smoke")["options"] == bench["options"]  # tests and the demo run the bench choices


def test_row1_dynm_divergence_is_kl_teacher_student_as_the_reference_code():
    s = np.array([[2.0, 0.0, -1.0]])
    teachers = np.array([[0.0, 3.0, 0.0], [4.0, 2.0, 1.0]])
    p_s = softmax(s[0] / 3)
    by_hand = {
        "teacher-student": [sum(pt * math.log(pt / ps) for pt, ps in zip(softmax(t / 3), p_s)) for t in teachers],
        "student-teacher": [sum(ps * math.log(ps / pt) for pt, ps in zip(softmax(t / 3), p_s)) for t in teachers],
    }
    for divergence, expected in by_hand.items():
        omega = kl_matrix(torch.tensor(s), torch.tensor(teachers), 3.0, divergence)
        assert omega[0].tolist() == pytest.approx(expected, rel=1e-6)
    # on random logits the two directions disagree for a sizeable share of students
    rng = np.random.default_rng(0)
    student_logits, teacher_logits = (torch.tensor(rng.normal(size=(n, 5)) * 3, dtype=torch.float32) for n in (200, 50))
    labels, galleries = np.zeros(200, dtype=int), [np.arange(50)]
    reference = dynm_match(student_logits, teacher_logits, labels, galleries, 3.0, divergence="teacher-student")
    eq10 = dynm_match(student_logits, teacher_logits, labels, galleries, 3.0, divergence="student-teacher")
    assert 0.1 < (reference != eq10).mean() < 0.9
    with pytest.raises(ValueError, match="expected one of teacher-student, student-teacher"):
        kl_matrix(student_logits, teacher_logits, 3.0, "symmetric")


def test_row2_dynm_epochs_are_main_configs_lists_or_eq12_continued():
    defaults = sembridge_defaults()
    assert dynm_epochs(defaults, "s2s-eu", "reference", 200) == [30, 60, 95, 135]
    assert dynm_epochs(defaults, "s2s-eu", "eq12", 200) == [30, 60, 95, 135, 180]
    assert dynm_epochs(defaults, "s2s-cn", "reference", 200) == [45, 60, 80, 105, 135]
    assert dynm_epochs(defaults, "s2s-cn", "eq12", 200) == [45, 60, 80, 105, 135, 170]
    assert dynm_epochs(defaults, "m2s-gl", "reference", 200) == dynm_epochs(defaults, "m2s-gl", "eq12", 200) == [15, 45, 80, 120, 165]
    assert dynm_epochs(defaults, "s2s-eu", "reference", 100) == [30, 60, 95]
    assert dynm_epochs(defaults, "toy", "reference", 8) == [2, 4, 7]  # no reference list: Eq. 12
    assert dynm_epochs(defaults, "s2s-eu", "reference", 200, (10, 10, 0)) == list(range(10, 200, 10))  # explicit wins


class FixedBackbone(nn.Module):
    """A student whose outputs are given tensors (with a parameter, so there is something to train)."""

    def __init__(self, outputs):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.outputs = outputs

    def forward(self, images):
        return {k: v * self.scale for k, v in self.outputs.items()}


def test_row3_baselines_alone_use_their_own_ce_kd_weights():
    expected = {"kd": (1.0, 1.0), "dkd": (1.0, 1.0), "ctkd": (0.1, 0.9), "lskd": (0.3, 0.7), "rkd": (0.3, 0.7),
                "logits": (0.3, 0.7), "vpr": (1.0, 1.0)}
    for method, (task, kd) in expected.items():
        assert load_method_defaults(method)["alone_weights"] == {"task": task, "kd": kd}
    # CTKD.py:77's value, by hand: 0.1 CE + 0.9 KL(p_T || p_S) at tau = 1 + 20 sigmoid(1), no tau^2
    s, t, y = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.0, 1.0]), 1
    tau = 1 + 20 / (1 + math.exp(-1))
    ce = -math.log(softmax(s)[y])
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(softmax(t / tau), softmax(s / tau)))
    module = StudentModule(FixedBackbone({"logits": torch.tensor(s[None], dtype=torch.float32)}),
                           build_distiller("ctkd", 3), {"task": 0.1, "kd": 0.9})
    out = module(torch.zeros(1, 3, 2, 2), torch.tensor([y]), {"logits": torch.tensor(t[None], dtype=torch.float32)}, 10)
    assert out["loss"].item() == pytest.approx(0.1 * ce + 0.9 * kl, rel=1e-5)


def test_row4_ctkd_reference_scale_and_start(tmp_path):
    reference = build_distiller("ctkd", 3)
    bench = build_distiller("ctkd", 3, load_profile("bench")["methods"]["ctkd"])
    tau0 = 1 + 20 / (1 + math.exp(-1))  # 15.62: theta from 1 in both, as the CTKD authors' Global_T
    assert reference.diagnostics(0)["tau"].item() == pytest.approx(tau0, rel=1e-6)
    assert bench.diagnostics(0)["tau"].item() == pytest.approx(tau0, rel=1e-6)
    s, t = {"logits": torch.tensor([[1.0, 2.0, 0.5]])}, {"logits": torch.tensor([[3.0, 0.0, 1.0]])}
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(softmax(np.array([3.0, 0, 1]) / tau0),
                                                      softmax(np.array([1.0, 2, 0.5]) / tau0)))
    assert reference(s, t, None, 0)["ctkd"].item() == pytest.approx(kl, rel=1e-5)
    assert bench(s, t, None, 0)["ctkd"].item() == pytest.approx(tau0**2 * kl, rel=1e-5)


def test_row5_shufflenet_width_follows_the_profile():
    half, full = build_backbone("S", 3, 10, 0.5), build_backbone("S", 3, 10, 1.0)
    stage_widths = lambda b: [2 * b.body[i][-1].branch2[-3].out_channels for i in (2, 3, 4)]  # noqa: E731
    assert stage_widths(half) == [48, 96, 192] and stage_widths(full) == [116, 232, 464]  # torchvision x0.5 / x1.0
    assert half(torch.zeros(2, 3, 32, 32))["pooled"].shape == (2, 512)
    with pytest.raises(AckdError, match="resnet34 width 0.5: expected one of 1.0"):
        build_backbone("R", 3, 10, 0.5)


def test_row6_and_row11_paper_profile_feeds_unaugmented_images_and_reference_pseudo_rgb():
    paper = load_profile("paper")
    assert paper["teacher"]["augment"] == paper["student"]["augment"] == paper["matcher"]["augment"] == []
    assert load_profile("bench")["student"]["augment"] == ["hflip", "vflip"]
    # utils/dataset.py:69-70 by hand: bands 1-3 of the stored image, over the image's max, to [-1, 1]
    raw = np.array([[[100.0, 300.0]], [[50.0, 400.0]], [[200.0, 0.0]], [[900.0, 900.0]]])  # 4 bands, 1 x 2 pixels
    mean, std = np.array([10.0, 20.0, 30.0, 40.0]), np.array([2.0, 4.0, 5.0, 8.0])
    normalised = torch.tensor((raw - mean[:, None, None]) / std[:, None, None], dtype=torch.float32)[None]
    matcher = Matcher(4, [2, 1, 0], pseudo_rgb="first-bands-image-max", band_mean=mean, band_std=std)
    expected = raw[:3] / 400.0 * 2 - 1  # band 4 (900) is not among the first three
    assert matcher.pseudo_rgb(normalised)[0].numpy() == pytest.approx(expected, abs=1e-5)
    # the reference's S2S form: (rgb_ssl / rgb_ssl.max() * 255).astype(np.uint8), fed without Normalize
    reference = Matcher(4, [2, 1, 0], pseudo_rgb="reference", band_mean=mean, band_std=std)
    by_hand = [[[63.0, 191.0]], [[31.0, 255.0]], [[127.0, 0.0]]]  # 100/400*255 = 63.75 -> 63, 300 -> 191.25 -> 191
    assert reference.pseudo_rgb(normalised)[0].tolist() == by_hand
    # M2S-GL (:352-353): the MS input's first three channels, Normalize(0.5, 0.5) as the MS input itself
    multilabel = Matcher(4, [2, 1, 0], pseudo_rgb="reference", band_mean=mean, band_std=std, multilabel=True)
    assert torch.equal(multilabel.pseudo_rgb(normalised), normalised[:, :3])
    project = Matcher(4, [2, 1, 0])
    assert torch.equal(project.pseudo_rgb(normalised), normalised[:, [2, 1, 0]])


@pytest.mark.skipif(not (REALDATA / "eurosat_ms").is_dir(), reason="../shared/realdata/eurosat_ms is absent")
def test_row12_ms_bands_paper_feeds_the_reference_codes_eurosat_bands_and_bench_the_recipes(tmp_path):
    """utils/dataset.py:86 (also :65, :114) by hand on real EuroSAT files: `src.read([1, 2, 3, 4, 5, 6, 7, 10,
    11, 12])` of the published band order B01..B12, B8A. Under `paper` a teacher's input channels are
    those planes of a known sample (B01-B07, B10, B11, B12), under `bench` the recipe's B02-B08, B8A,
    B11, B12 (file bands 2-8, 13, 11, 12), each normalised with its own band's train statistics,
    streamed and resident alike."""
    import rasterio

    from ackd_bench.data.build import build_dataset
    from ackd_bench.data.sources import EuroSATAllBands
    from ackd_bench.train.api import resolved, run_dataset
    from ackd_bench.train.engine import Runtime
    from ackd_bench.train.feed import ResidentSplit

    from .data.resisc45 import data as resisc45_data

    tree = REALDATA / "eurosat_ms" / "EuroSAT_MS"
    sources = tmp_path / "sources"
    (sources / "eurosat").mkdir(parents=True)
    (sources / "eurosat" / "EuroSAT_MS").symlink_to(tree)  # the real files, 20 per class
    resisc45_data.make_tree(sources, per_class=2, size=64)
    out = tmp_path / "s2s-eu"
    stored = build_dataset("s2s-eu", out, source_dir=sources, download=False, progress=False).manifest.modalities["ms"]
    mean, std = dict(zip(stored.bands, stored.mean)), dict(zip(stored.bands, stored.std))
    by_hand = {"paper": [1, 2, 3, 4, 5, 6, 7, 10, 11, 12], "bench": [2, 3, 4, 5, 6, 7, 8, 13, 11, 12]}
    rt = Runtime(device=torch.device("cpu"), progress=False)
    for profile, file_bands in by_hand.items():
        names = [("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")[k - 1]
                 for k in file_bands]
        assert EuroSATAllBands.file_bands == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10",
                                              "B11", "B12", "B8A")
        # what train_classifier hands the teacher's task, from the request as a run resolves it
        train = run_dataset(resolved(RunRequest.teacher_run(out, "S", profile=profile))).split("ms", "train")
        assert train.bands == names and len(train.bands) == 10
        index = 3
        _, cls, name = train.source_ids()[index].split("/")
        with rasterio.open(tree / cls / name) as src:
            planes = src.read(file_bands).astype(np.float64)
        expected = ((planes - np.array([mean[b] for b in names])[:, None, None])
                    / np.array([std[b] for b in names])[:, None, None])
        np.testing.assert_array_equal(train.reader.read(index), planes)
        np.testing.assert_allclose(train[index]["image"].numpy(), expected, rtol=1e-5, atol=1e-5)
        resident = ResidentSplit(train, rt).images(torch.tensor([index]))[0]
        np.testing.assert_allclose(resident.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_row7_multilabel_teacher_f1_is_the_reference_macro_f1_of_logits_above_half():
    targets = np.array([[1, 0, 1], [0, 1, 0]])
    logits = np.array([[0.6, 0.4, -1.0], [0.3, 0.7, 0.55]])
    # logits > 0.5: [[1,0,0],[0,1,1]] -> class F1s 1, 1, 0 -> macro 2/3 (val.py:41, 55)
    assert multi_label_metrics(targets, logits, "macro-logit-0.5")["f1"] == pytest.approx(2 / 3)
    # sigmoid >= 0.5: [[1,1,0],[1,1,1]] -> sample F1s 2/4 and 2/4 -> 0.5
    assert multi_label_metrics(targets, logits, "samples")["f1"] == pytest.approx(0.5)


def test_row8_loss_terms_stay_float32_inside_bf16_autocast():
    torch.manual_seed(0)
    centre = torch.randn(1, 512) * 10
    student = {"pooled": centre + 1e-2 * torch.randn(16, 512), "logits": torch.randn(16, 4)}
    teacher = {"pooled": centre + 1e-2 * torch.randn(16, 512), "logits": torch.randn(16, 4)}
    targets = torch.randint(0, 4, (16,))
    images = torch.zeros(16, 3, 2, 2)

    def rkd_term(precision, autocast):
        module = StudentModule(FixedBackbone(student), build_distiller("rkd", 4), {"task": 0.3, "kd": 0.7},
                               precision=precision)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return module(images, targets, teacher, 0)["rkd_distance"].item()

    exact = rkd_term("fp32", autocast=False)
    assert rkd_term("fp32", autocast=True) == pytest.approx(exact, rel=1e-6)
    assert abs(rkd_term("autocast", autocast=True) - exact) > 0.1 * abs(exact)  # clustered features in bf16


def _rkdg_by_hand(s, t, c=0.1):
    def pdist(x):
        return np.array([[np.linalg.norm(a - b) for b in x] for a in x])

    def angles(x):
        out = []
        for i in range(len(x)):
            for j in range(len(x)):
                for k in range(len(x)):
                    u, v = x[j] - x[i], x[k] - x[i]
                    nu, nv = max(np.linalg.norm(u), 1e-12), max(np.linalg.norm(v), 1e-12)
                    out.append(float(u @ v / nu / nv))
        return np.array(out)

    def to_ball(x):
        n = np.linalg.norm(x, axis=1, keepdims=True)
        y = np.tanh(math.sqrt(c) * n) * x / (math.sqrt(c) * n)
        limit = (1 - 1e-3) / math.sqrt(c)
        yn = np.linalg.norm(y, axis=1, keepdims=True)
        return np.where(yn > limit, y / yn * limit, y)

    def geodesic(x):
        b = to_ball(x)
        d = np.zeros((len(b), len(b)))
        for i in range(len(b)):
            for j in range(len(b)):
                if i != j:
                    num = 2 * c * np.sum((b[i] - b[j]) ** 2)
                    den = (1 - c * b[i] @ b[i]) * (1 - c * b[j] @ b[j])
                    d[i, j] = math.acosh(1 + num / den) / math.sqrt(c)
        return d

    def smooth_l1(a, b):
        diff = np.abs(a - b)
        return float(np.mean(np.where(diff < 1, 0.5 * diff**2, diff - 0.5)))

    def mean_norm(d):
        return d / d[d > 0].mean()

    return (smooth_l1(mean_norm(pdist(s)), mean_norm(pdist(t))) + smooth_l1(angles(s), angles(t))
            + smooth_l1(mean_norm(geodesic(s)), mean_norm(geodesic(t))))


def test_row9_vpr_rkdg_on_raw_embeddings_weighted_ten():
    rng = np.random.default_rng(3)
    s, t = rng.normal(size=(4, 6)) * 2, rng.normal(size=(4, 6)) * 2
    out = lambda x: {"pooled": torch.tensor(x, dtype=torch.float32), "logits": torch.zeros(4, 2)}  # noqa: E731
    reference = build_distiller("vpr", 2)(out(s), out(t), None, 0)["vpr_rkdg"].item()
    assert reference == pytest.approx(10 * _rkdg_by_hand(s, t), rel=1e-4)
    l2 = build_distiller("vpr", 2, {"rkdg_embeddings": "l2", "rkdg_weight": 1.0})(out(s), out(t), None, 0)["vpr_rkdg"]
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    assert l2.item() == pytest.approx(_rkdg_by_hand(unit(s), unit(t)), rel=1e-4)


def test_row10_reference_matcher_loss_by_hand_and_its_learned_targets():
    ms = np.array([[1.0, 0.0], [0.0, 2.0]])
    rgb = np.array([[1.0, 1.0], [0.0, 1.0]])
    logits = rgb @ ms.T  # temperature 1, raw embeddings (model/CLIP.py:41)
    targets = np.stack([softmax(row) for row in (ms @ ms.T + rgb @ rgb.T) / 2])

    def cross_entropy(pred, target):
        return np.array([-(target[i] * np.log(softmax(pred[i]))).sum() for i in range(len(pred))])

    expected = ((cross_entropy(logits, targets) + cross_entropy(logits.T, targets.T)) / 2).mean()
    ms_t = torch.tensor(ms, dtype=torch.float32, requires_grad=True)
    rgb_t = torch.tensor(rgb, dtype=torch.float32)
    form = sembridge_defaults()["matcher_losses"]["reference"]
    loss = clip_loss(ms_t, rgb_t, **form)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    learned = torch.autograd.grad(loss, ms_t)[0]
    fixed = torch.autograd.grad(clip_loss(ms_t, rgb_t, **{**form, "learned_targets": False}), ms_t)[0]
    assert not torch.allclose(learned, fixed)  # the reference lets the targets train too
    normalised = clip_loss(ms_t, rgb_t, **sembridge_defaults()["matcher_losses"]["normalised"])
    unit_ms, unit_rgb = ms / np.linalg.norm(ms, axis=1, keepdims=True), rgb / np.linalg.norm(rgb, axis=1, keepdims=True)
    eye = np.eye(2)
    sims = unit_rgb @ unit_ms.T / 0.1
    assert normalised.item() == pytest.approx(((cross_entropy(sims, eye) + cross_entropy(sims.T, eye)) / 2).mean(), rel=1e-5)


def test_paper_profile_runs_end_to_end_with_its_reference_choices(toy_dir, tmp_path):
    """Teacher, matcher and SemBridge and CTKD students under `paper`, one short epoch each: the
    options reach the runs, their configs and checkpoints."""
    options = RunOptions(runs_root=tmp_path, progress=False)
    small = {"epochs": 1, "batch_size": 16}
    teacher = train_classifier(RunRequest.teacher_run(toy_dir, "S", profile="paper", overrides=small), options)
    teacher_ckpt = torch.load(f"{teacher['run_dir']}/checkpoints/best.pt", weights_only=True)
    assert teacher_ckpt["width"] == 0.5 and teacher_ckpt["module"]["backbone.body.2.0.branch1.2.weight"].shape[0] == 24
    assert teacher_ckpt["heads"] == "reference" and teacher_ckpt["module"]["backbone.project.bias"].shape == (512,)
    assert teacher["precision"] == "fp32"
    from ackd_bench.train.api import train_matcher

    matcher = train_matcher(RunRequest.matcher_run(toy_dir, "S", profile="paper", overrides=small), options)
    matcher_config = json.loads(open(f"{matcher['run_dir']}/config.json").read())
    assert matcher_config["matcher_params"]["normalise"] is False and matcher_config["optim"]["optimizer"] == "adamw"
    assert matcher_config["matcher_params"]["pseudo_rgb"] == "reference"
    assert matcher_config["matcher_params"]["heads"] == "reference" and matcher_config["optim"]["epochs"] == 1
    teacher_path = f"{teacher['run_dir']}/checkpoints/best.pt"
    alone = train_student(RunRequest.student_run(toy_dir, "S", "ctkd", teacher=teacher_path, profile="paper",
                                                 overrides=small), options)
    config = json.loads(open(f"{alone['run_dir']}/config.json").read())
    assert config["loss_weights"]["task"] == 0.1 and config["loss_weights"]["kd"] == 0.9
    assert config["method_params"]["t_squared"] is False and config["options"]["loss_precision"] == "fp32"
    assert alone["profile"].startswith("paper+set-")  # its batch size is not the paper's: named apart
    sembridge = train_student(RunRequest.student_run(toy_dir, "S", "sembridge+ctkd", teacher=teacher_path,
                                                     matcher=f"{matcher['run_dir']}/checkpoints/best.pt",
                                                     profile="paper", overrides=small), options)
    config = json.loads(open(f"{sembridge['run_dir']}/config.json").read())
    assert (config["loss_weights"]["task"], config["loss_weights"]["kd"]) == (0.3, 0.4)  # train.py:268
    assert config["sembridge"]["dynm_divergence"] == "teacher-student"


def test_row13_paper_keeps_the_first_epochs_matcher_and_bench_the_best_val_one(toy_dir):
    from ackd_bench.train.api import matcher_spec

    paper = matcher_spec(RunRequest.matcher_run(toy_dir, "S", profile="paper"))
    bench = matcher_spec(RunRequest.matcher_run(toy_dir, "S", profile="bench"))
    # train_matcher.py:79, 123-126: val_loss_meter.avg stays 0 < inf only at epoch 1; later epochs cannot
    # change the matcher kept, so `paper` runs one of its 100
    assert (paper.section["epochs"], paper.config["optim"]["epochs"]) == (1, 1)
    assert bench.section["epochs"] == load_profile("bench")["matcher"]["epochs"] == 100


def test_row14_reference_heads_end_at_512_as_the_reference_code():
    torch.manual_seed(0)
    mobile = build_backbone("M", 3, 10, heads="reference")
    last = mobile.body[-1]  # model/MobileNetV2.py:81: ConvBNReLU(320, 512, 1) with ReLU6, no projection
    assert (last[0].in_channels, last[0].out_channels, last[0].kernel_size) == (320, 512, (1, 1))
    assert isinstance(last[2], nn.ReLU6) and isinstance(mobile.project, nn.Identity)
    assert isinstance(build_backbone("M", 3, 10).project, nn.Sequential)  # projected: 1280 -> 512 conv+BN+ReLU
    shuffle = build_backbone("S", 3, 10, 0.5, heads="reference").eval()
    images = torch.randn(2, 3, 64, 64)
    out = shuffle(images)
    # model/ShuffleNet.py:141-143: conv5 (1024), global pool, then Linear(1024, 512), by hand
    conv5 = shuffle.body(images).mean(dim=(2, 3))
    weight, bias = shuffle.project.weight[:, :, 0, 0], shuffle.project.bias
    assert out["pooled"].detach().numpy() == pytest.approx((conv5 @ weight.t() + bias).detach().numpy(), abs=1e-5)
    assert out["tokens"].shape == (2, 4, 512)  # the same Linear on each token: 512-wide tokens for the Planner
    assert build_backbone("R", 3, 10, heads="reference").project.__class__ is nn.Identity
    with pytest.raises(AckdError, match="backbone heads 'torchvision': expected one of reference, projected"):
        build_backbone("S", 3, 10, heads="torchvision")


def test_row16_multilabel_teacher_selection_is_the_reference_subset_accuracy():
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    # val.py:41, 49: labels at logits > 0.5, accuracy_score on rows: a row counts when all its labels are right
    logits = np.array([[0.6, 0.4, 0.9], [0.3, 0.7, 0.5], [0.8, 0.2, -1.0]])  # rows 1, 2 right (0.5 is not above)
    assert multi_label_metrics(targets, logits)["subset_accuracy"] == pytest.approx(2 / 3)
    assert load_profile("paper")["options"]["multilabel_selection"] == "subset-accuracy"
    assert load_profile("bench")["options"]["multilabel_selection"] == "f1"


def test_row17_paper_runs_forwards_in_fp32_whatever_the_device():
    from ackd_bench.train.engine import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, "fp32") == resolve_precision("fp32", cpu, "fp32") == "fp32"
    assert resolve_precision("bf16", cpu, "auto") == "bf16"
    with pytest.raises(AckdError, match="--precision bf16: the profile runs in fp32"):
        resolve_precision("bf16", cpu, "fp32")


def test_row18_dkd_warmup_starts_at_zero_as_the_reference_and_at_a_twentieth_in_bench():
    torch.manual_seed(0)
    student, teacher = {"logits": torch.randn(4, 5)}, {"logits": torch.randn(4, 5)}
    targets = torch.tensor([0, 1, 2, 3])
    params = load_method_defaults("dkd")["params"]
    reference = build_distiller("dkd", 5, params)
    mdistiller = build_distiller("dkd", 5, {**params, **load_profile("bench")["methods"]["dkd"]})
    full = sum(reference(student, teacher, targets, 40).values())
    # Distillers/DKD.py:65: min(epoch / 20, 1) with epochs from 0; mdistiller counts from 1
    assert sum(reference(student, teacher, targets, 0).values()).item() == 0.0
    assert sum(mdistiller(student, teacher, targets, 0).values()).item() == pytest.approx(full.item() / 20, rel=1e-6)
    assert sum(reference(student, teacher, targets, 19).values()).item() == pytest.approx(full.item() * 19 / 20, rel=1e-6)
    assert sum(mdistiller(student, teacher, targets, 19).values()).item() == pytest.approx(full.item(), rel=1e-6)


def test_row15_galleries_are_every_ms_image_the_protocol_allows_or_the_teachers_own():
    from ackd_bench.data.splits import gallery_split

    assert load_profile("paper")["options"]["ms_gallery"] == "all"
    assert load_profile("bench")["options"]["ms_gallery"] == "train"
    # heldout never puts the MS test split (the teacher's own test) among the partners
    assert gallery_split("heldout", "all") == "train+val" and gallery_split("heldout", "train") == "train"
    # reference: every MS image, as generator.py:30-36 and train.py:155-162 draw from the whole dataset
    assert gallery_split("reference", "all") == "train+val+test"
    assert gallery_split("reference", "train") == "train+val"  # the teacher's own fit split


def test_row19_dynm_assignment_is_eq11s_argmin_in_paper_and_balanced_in_bench():
    """Students alike: Eq. 11 gives every one the same teacher (a hub); the balanced assignment gives
    no teacher more than ceil(N / M) of them, at the least total divergence such a table has."""
    from itertools import product

    assert load_profile("paper")["options"]["dynm_assignment"] == "argmin"
    assert load_profile("bench")["options"]["dynm_assignment"] == "balanced"
    students = torch.tensor([[2.0, 0.0, 0.0]]).repeat(5, 1) + 0.01 * torch.arange(5.0)[:, None]
    teachers = torch.tensor([[2.0, 0.1, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    labels, galleries = np.zeros(5, dtype=int), [np.arange(3)]
    argmin = dynm_match(students, teachers, labels, galleries, 3.0)
    assert argmin.tolist() == [0] * 5
    balanced = dynm_match(students, teachers, labels, galleries, 3.0, assignment="balanced")
    assert np.bincount(balanced, minlength=3).max() == 2  # ceil(5 / 3)
    omega = kl_matrix(students, teachers, 3.0).numpy()
    best = min(sum(omega[i, k] for i, k in enumerate(table)) for table in product(range(3), repeat=5)
               if np.bincount(table, minlength=3).max() <= 2)
    assert sum(omega[i, k] for i, k in enumerate(balanced)) == pytest.approx(best, rel=1e-9)
    with pytest.raises(ValueError, match="expected one of argmin, balanced"):
        dynm_match(students, teachers, labels, galleries, 3.0, assignment="hungarian")


def test_row20_coral_reference_grows_with_the_batch_and_covariance_does_not():
    from ackd_bench.methods.sembridge.coral import coral

    x = torch.tensor([[1.0, 2.0], [3.0, 0.0], [-1.0, 1.0]])
    y = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, -3.0]])
    xc, yc = x - x.mean(0), y - y.mean(0)
    covariance = ((xc.t() @ xc - yc.t() @ yc) / 2) ** 2  # Sun & Saenko: C = Xc^T Xc / (B - 1)
    assert coral(x, y, "covariance").item() == pytest.approx(covariance.sum().item() / (4 * 2**2), rel=1e-5)
    # the same features twice over: the reference's loss is 4 times larger, the covariance's the same
    # up to (B - 1) against (2B - 1)
    a, b = torch.randn(16, 40), torch.randn(16, 40) * 2
    doubled = torch.cat([a, a]), torch.cat([b, b])
    assert coral(*doubled).item() == pytest.approx(4 * coral(a, b).item(), rel=1e-4)
    assert coral(*doubled, "covariance").item() == pytest.approx(
        (2 * 15 / 31) ** 2 * coral(a, b, "covariance").item(), rel=1e-4)
    assert load_profile("paper")["options"]["coral"] == "reference"
    assert load_profile("bench")["options"]["coral"] == "covariance"


@pytest.mark.parametrize("lambda1, paper_ot, bench_ot", [(0.2, 0.3, 0.8), (0.4, 0.3, 0.6), (0.8, 0.3, 0.2)])
def test_row21_ot_weight_is_the_references_constant_in_paper_and_one_minus_lambda1_in_bench(lambda1, paper_ot,
                                                                                            bench_ot):
    from ackd_bench.train.api import loss_weights

    for profile, ot in (("paper", paper_ot), ("bench", bench_ot)):
        data = load_profile(profile)
        weights = loss_weights(data["student"], {}, data["options"], {"lambda1": lambda1})
        assert weights == pytest.approx({"task": 0.3, "kd": lambda1, "ot": ot, "ot_scale": weights["ot_scale"]})
        assert weights["ot_scale"] == data["student"]["loss_weights"]["ot_scale"]


def test_row21_a_weight_that_would_turn_negative_is_one_line(mini_toy, mini_teacher, mini_matcher, tmp_path, cli):
    from ackd_bench.train.api import loss_weights

    bench = load_profile("bench")
    with pytest.raises(AckdError, match=r"--lambda1 1.5: expected a value in \[0, 1\] under options.ot_weight"):
        loss_weights(bench["student"], {}, bench["options"], {"lambda1": 1.5})
    done = cli("train-student", str(mini_toy), "--arch", "S", "--method", "sembridge", "--teacher", str(mini_teacher),
               "--matcher", str(mini_matcher), "--profile", "smoke", "--lambda1", "1.5", "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--lambda1 1.5" in done.stderr
    assert not (tmp_path / "x" / "result.json").exists()
    profile = tmp_path / "negative.yaml"
    profile.write_text("extends: smoke\nname: negative\nstudent: {loss_weights: {ot: -0.3}}\n")
    done = cli("train-student", str(mini_toy), "--arch", "S", "--method", "kd", "--teacher", str(mini_teacher),
               "--profile", str(profile), "--out", str(tmp_path / "y"))
    assert done.returncode == 2 and "student.loss_weights.ot is -0.3: expected a number in [0, 1000]" in done.stderr
    # lambda1 = 0.8 runs under bench with the OT weight 0.2
    done = cli("train-student", str(mini_toy), "--arch", "S", "--method", "sembridge", "--teacher", str(mini_teacher),
               "--matcher", str(mini_matcher), "--profile", "smoke", "--lambda1", "0.8", "--epochs", "1",
               "--out", str(tmp_path / "z"), "--quiet")
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "z" / "config.json").read_text())
    assert config["loss_weights"]["kd"] == 0.8 and config["loss_weights"]["ot"] == pytest.approx(0.2)


def test_row22_bench_multiplies_every_kl_at_temperature_t_by_t_squared():
    s, t = {"logits": torch.tensor([[1.0, 2.0, 0.5]])}, {"logits": torch.tensor([[3.0, 0.0, 1.0]])}
    kl3 = sum(pt * math.log(pt / ps) for pt, ps in zip(softmax(np.array([3.0, 0, 1]) / 3),
                                                      softmax(np.array([1.0, 2, 0.5]) / 3)))
    paper, bench = load_profile("paper")["methods"], load_profile("bench")["methods"]
    assert build_distiller("kd", 3, paper.get("kd"))(s, t, None, 0)["kd"].item() == pytest.approx(kl3, rel=1e-5)
    assert build_distiller("kd", 3, bench.get("kd"))(s, t, None, 0)["kd"].item() == pytest.approx(9 * kl3, rel=1e-5)
    assert bench["ctkd"]["t_squared"] is True and paper.get("ctkd", {}).get("t_squared") is None
    # LSKD and DKD carry T^2 in every profile: neither has a switch for it
    assert not {"t_squared"} & (set(load_method_defaults("lskd")["params"]) | set(load_method_defaults("dkd")["params"]))
