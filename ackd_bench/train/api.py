"""Entry points that the CLI and tests call: teacher, matcher and student runs on a built dataset."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..data.splits import PROTOCOLS, ProtocolSplits, gallery_split
from ..errors import AckdError
from ..experiment import parse_ablation, parse_method
from ..methods import build_distiller, load_method_defaults
from ..methods.registry import load_outside, method_source
from ..models import build_backbone, canonical_arch
from ..models.backbones import backbone_settings, short_arch
from ..predictions import write_predictions
from ..provenance import code_version, config_hash, sha256_file, write_json_atomic
from ..results import MatcherResult, make_record, read_result_json, write_result
from ..threads import set_threads
from .classifier import ClassifierTask
from .distributed import init_from_env, shutdown
from .device import resolve_device
from .engine import Engine, FitResult, OptimConfig, Runtime, resolve_precision, seed_everything
from .feed import RESIDENT_MODES
from .loggers import check_loggers
from .profiles import load_profile, renamed
from .request import RunRequest, write_request
from .runs import BuiltDataset, device_name, evaluate, load_dataset, prepare_run_dir, run_lock
from .sembridge_run import sembridge_defaults, sembridge_run
from .student import DistillationTask, StudentModule, TeacherSource
from .teacher_cache import build_or_load_cache, load_teacher, require_teacher


@dataclass
class RunOptions:
    """How to run, as opposed to what to run (does not enter the config hash)."""

    run_dir: Path | None = None
    runs_root: Path = Path("runs")
    resume: bool | str = False  # True, False or "auto" (resume when the run has a checkpoint)
    force: bool = False
    device: str = "auto"
    workers: int | None = None
    progress: bool = True
    reuse_finished: bool = False  # return a finished run's result instead of refusing to overwrite it
    resident: str = "auto"  # hold splits in device memory: "auto" (when they fit), "on" or "off"
    checkpoint_every: float = 600.0  # seconds between last.pt saves (0: every epoch); always at the end
    compile: bool = False  # torch.compile the backbones
    threads: int | None = None  # torch CPU threads (None: threads.default_threads)
    runs_at_once: int = 1  # runs a launcher started together on this machine, sharing its cores
    precision: str = "auto"  # auto | bf16 | fp16 | fp32 (engine.resolve_precision); recorded in the result
    loggers: tuple[str, ...] = ("csv",)  # csv (always), tensorboard, wandb, mlflow (train/loggers.py)
    teacher_mode: str = "cache"  # students: the teacher's cached outputs, or "live" (run on every batch)
    log_transport_cost: bool = False  # students: the teacher-student Wasserstein distance every epoch (Fig. 2)
    sync_batchnorm: bool = False  # DDP on GPUs: SyncBatchNorm (recorded in the result's device)

    def reusing(self, run_dir: Path | None = None, *, keep_resume: bool = False) -> "RunOptions":
        """The options of a run that a sweep, an eval or a student's prerequisites may find done or half
        done: a finished run of the same config hash is reused, an interrupted one resumed, nothing is
        forced; `run_dir` None puts it in its default directory. `keep_resume`: a --resume the user
        gave stays strict (the run must have a checkpoint), as for the students `eval` was asked for."""
        return replace(self, run_dir=run_dir, force=False, reuse_finished=True,
                       resume=True if keep_resume and self.resume is True else "auto")


def make_runtime(options: RunOptions, forward_precision: str = "auto") -> Runtime:
    if options.resident not in RESIDENT_MODES:
        raise AckdError(f"--resident {options.resident}: expected one of {', '.join(RESIDENT_MODES)}")
    loggers = check_loggers(options.loggers)  # a missing package stops here, before the run directory exists
    device = resolve_device(options.device)
    set_threads(options.threads, options.runs_at_once * int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if options.sync_batchnorm and device.type != "cuda":
        raise AckdError(f"--sync-batchnorm: needs CUDA GPUs under torchrun (NCCL); the device here is {device}")
    ctx = init_from_env(device)
    workers = options.workers if options.workers is not None else (4 if device.type == "cuda" else 0)
    return Runtime(device=device, ctx=ctx, workers=workers, progress=options.progress, resident=options.resident,
                   checkpoint_every=options.checkpoint_every, compile=options.compile,
                   precision=resolve_precision(options.precision, device, forward_precision), loggers=loggers,
                   sync_batchnorm=options.sync_batchnorm and ctx.enabled)


def dataset_meta(data: BuiltDataset, modality: str) -> dict[str, Any]:
    """What a run's config and checkpoint record of its dataset (a checkpoint is checked against it):
    the bands are those the run feeds (the MS side's selection), so their count is the model's input."""
    manifest, spec = data.manifest, data.modality(modality)
    return {
        "dataset": manifest.dataset, "dataset_version": manifest.dataset_version, "modality": modality,
        "bands": list(spec.bands), "classes": list(manifest.classes), "multilabel": spec.multilabel,
    }


def run_dataset(request: RunRequest) -> BuiltDataset:
    """A resolved request's dataset, feeding the MS bands its profile selects (options.ms_bands)."""
    return load_dataset(request.dataset, request.profile["options"]["ms_bands"])


def run_dir_for(options: RunOptions, dataset: str, label: str, config: dict[str, Any]) -> Path:
    digest = config_hash(config)
    return Path(options.run_dir) if options.run_dir else Path(options.runs_root) / dataset / f"{label}-{digest[:8]}"


def model_meta(kind: str, arch: str, settings: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """What a model's checkpoint records of it, checked when it is loaded (checkpoint.require_fields):
    its kind and architecture, the dataset it was trained on, its input bands and classes."""
    return {**meta, "kind": kind, "arch": arch, **settings, "in_channels": len(meta["bands"]),
            "num_classes": len(meta["classes"])}


def run_identity(method: str, *, teacher: str | None, student: str | None, kd_loss: str | None = None,
                 sembridge: bool = False, ablation: Sequence[str] = (), teacher_sha256: str | None = None,
                 published: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a result record says a run is (beside its dataset, seed and profile): its method, loss,
    SemBridge and ablation, its pair, the teacher it learnt from, and where its method is published."""
    return {"method": method, "kd_loss": kd_loss, "sembridge": sembridge, "ablation": ",".join(ablation),
            "teacher": teacher, "student": student, "teacher_sha256": teacher_sha256,
            **(published or {"paper_url": None, "code_url": None})}


@dataclass
class RunSpec:
    """What a run is: its request (recorded for a replay), its config (hashed), label, optimiser section
    and checkpoint metadata."""

    data: BuiltDataset
    request: RunRequest
    config: dict[str, Any]
    label: str
    section: dict[str, Any]
    checkpoint_meta: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)  # method, kd_loss, sembridge, ablation, teacher, student
    test_modality: str = "rgb"

    @property
    def digest(self) -> str:
        return config_hash(self.config)

    @property
    def protocol(self) -> str:
        return self.config["options"]["protocol"]

    @property
    def splits(self) -> ProtocolSplits:
        """The splits the profile's protocol fits on, selects the epoch on, and reports."""
        return PROTOCOLS[self.protocol]


def execute(spec: RunSpec, options: RunOptions, build_task: Callable, finish: Callable | None = None) -> dict[str, Any]:
    """What every run shares: run directory, seeding, engine, selection on the protocol's select
    split, then `finish` (default: one evaluation of the selected classifier on the report split, and
    its result record). `build_task(runtime, cfg)` returns (task, backbone evaluated on report)."""
    started = time.time()
    # resolved: two links to one folder are one run (one lock, one writer)
    run_dir = run_dir_for(options, spec.data.manifest.dataset, spec.label, spec.config).resolve()
    if (reused := _reused(run_dir, options)) is not None:
        return reused
    cfg = OptimConfig.from_dict(spec.section)  # a bad value stops here, before the run directory exists
    rt = make_runtime(options, spec.config["options"]["forward_precision"])
    try:
        with run_lock(run_dir, rt.ctx.is_main):
            return _execute_locked(spec, options, build_task, finish, run_dir, rt, cfg, started)
    except OUT_OF_MEMORY as exc:
        raise AckdError(out_of_memory_line(run_dir, exc, cfg.batch_size, options)) from None
    finally:
        shutdown(rt.ctx)


OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def out_of_memory_line(run_dir: Path, exc: BaseException, batch_size: int, options: RunOptions) -> str:
    """A device out-of-memory error as one line: what the run held, and what to change."""
    said = str(exc).split("\n", 1)[0].split(". ", 1)[0][:160]
    return (f"{run_dir}: out of device memory ({said}) at batch size {batch_size}, --resident {options.resident}, "
            f"{options.runs_at_once} run(s) at once on this device: lower --batch-size, pass --resident off, or run "
            "fewer at once (--runs-per-gpu); the run resumes from its last checkpoint with --resume")


def _reused(run_dir: Path, options: RunOptions) -> dict[str, Any] | None:
    if not options.reuse_finished or options.force or options.resume is True:
        return None  # not read: a damaged result.json must not stop the run that replaces it
    finished = read_result_json(run_dir)  # a matcher's too: it has no Record
    return None if finished is None else {**finished, "run_dir": str(run_dir), "best_epoch": None, "reused": True}


def _execute_locked(spec: RunSpec, options: RunOptions, build_task: Callable, finish: Callable | None, run_dir: Path,
                    rt: Runtime, cfg: OptimConfig, started: float) -> dict[str, Any]:
    seed, digest = spec.config["seed"], spec.digest
    if (reused := _reused(run_dir, options)) is not None:  # again: it may have finished while this one waited
        return reused
    resume = (run_dir / "checkpoints" / "last.pt").exists() if options.resume == "auto" else bool(options.resume)
    if rt.ctx.is_main:
        prepare_run_dir(run_dir, resume=resume, force=options.force)
        write_json_atomic(run_dir / "config.json", {**spec.config, "config_hash": digest})
        write_request(run_dir, spec.request)
    seed_everything(seed)
    task, backbone = build_task(rt, cfg)
    meta = {**spec.checkpoint_meta, "config": spec.config, "config_hash": digest, "code_version": code_version()}
    engine = Engine(task, cfg, rt, run_dir, meta)
    fit = engine.fit(resume=resume)
    engine.load_best()
    if finish is not None:
        result = finish(rt, fit, run_dir)
    else:
        result = _classification_record(spec, rt, cfg, fit, backbone, started, run_dir)
    if rt.ctx.is_main:
        write_result(run_dir, result)
    return {**result.to_dict(), "run_dir": str(run_dir), "best_epoch": fit.best_epoch}


def _classification_record(spec: RunSpec, rt: Runtime, cfg: OptimConfig, fit: FitResult, backbone, started: float,
                           run_dir: Path):
    """The one evaluation on the report split: its per-item predictions into the run folder (the main
    rank's), its metrics and their digest into the record."""
    manifest = spec.data.manifest
    report = spec.data.split(spec.test_modality, spec.splits.report)
    metrics = evaluate(backbone, report, rt, cfg.batch_size, spec.config["options"]["multilabel_f1"],
                       keep_predictions=True)
    predictions_sha256 = write_predictions(run_dir, metrics["predictions"]) if rt.ctx.is_main else None
    return make_record(
        dataset=manifest.dataset, dataset_version=manifest.dataset_version, **spec.record,
        seed=spec.config["seed"], profile=spec.config["profile"], epochs=cfg.epochs, protocol=spec.protocol,
        oa=metrics["oa"], f1=metrics["f1"],
        val_oa=fit.best_val.get("oa"), val_f1=fit.best_val["f1"], n_test=metrics["n"],
        config_hash=spec.digest, code_version=code_version(), wall_seconds=round(time.time() - started, 3),
        device=device_name(rt), precision=rt.precision, predictions_sha256=predictions_sha256,
    )


def resolved(request: RunRequest) -> RunRequest:
    """The request as a run records it: its profile loaded (a replay does not depend on the profile
    file staying as it was), its dataset and checkpoints absolute paths (or hub addresses)."""
    def absolute(path: str | None) -> str | None:
        return path if path is None or path.startswith("hf://") else str(Path(path).resolve())

    return replace(request, profile=load_profile(request.profile), dataset=absolute(request.dataset),
                   teacher=absolute(request.teacher), matcher=absolute(request.matcher))


@dataclass(frozen=True)
class Replay:
    result: dict[str, Any]
    original_hash: str | None  # the recorded run's config hash
    config_hash: str  # the repeat's

    @property
    def same_config(self) -> bool:
        return self.original_hash == self.config_hash


def rerun(run_dir: str | Path, options: RunOptions | None = None, dataset: str | Path | None = None) -> Replay:
    """Repeat a run from its folder's recorded request, into `options.run_dir` (default: RUN_DIR-rerun);
    `dataset` points it at a copy of its dataset that has moved."""
    from .request import read_request

    run_dir = Path(run_dir)
    request = read_request(run_dir)
    if dataset is not None:
        request = replace(request, dataset=str(dataset))
    options = options or RunOptions()
    if options.run_dir is None:
        options = replace(options, run_dir=run_dir.with_name(run_dir.name + "-rerun"))
    try:
        original = json.loads((run_dir / "config.json").read_text()).get("config_hash")
    except (OSError, ValueError, AttributeError):
        original = None
    result = run(request, options)
    return Replay(result, original if isinstance(original, str) else None, result["config_hash"])


def _profile_section(request: RunRequest, role: str):
    """The role's optimiser section, the seed and the whole profile (its options and method overrides)."""
    profile_data = load_profile(request.profile, {role: dict(request.overrides)})
    seed = request.seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise AckdError(f"--seed {seed}: expected a whole number from 0 to 2**32 - 1")
    return profile_data[role], int(seed if seed is not None else profile_data["seed"]), profile_data


def _profile_config(profile_data: dict[str, Any]) -> dict[str, Any]:
    """What a run's config records of its profile: its name, the --set assignments and the options."""
    return {"profile": profile_data["name"], **({"profile_set": profile_data["set"]} if "set" in profile_data else {}),
            "options": profile_data["options"]}


def _classifier_spec(data: BuiltDataset, request: RunRequest, arch: str, role: str) -> RunSpec:
    modality = "ms" if role == "teacher" else "rgb"
    section, seed, profile_data = _profile_section(request, role)
    options = profile_data["options"]
    meta = dataset_meta(data, modality)
    method = "teacher" if role == "teacher" else "none"
    short = short_arch(arch)
    settings = backbone_settings(arch, options)
    return RunSpec(
        data=data, request=request, section=section, test_modality=modality,
        config={"kind": role, "method": method, "arch": arch, **settings, "seed": seed,
                **_profile_config(profile_data), "optim": section, **meta},
        label=f"{role}-{short}" + ("" if role == "teacher" else "-none") + f"-s{seed}",
        checkpoint_meta=model_meta(role, arch, settings, meta),
        record=run_identity(method, teacher=short if role == "teacher" else None,
                            student=None if role == "teacher" else short),
    )


def run(request: RunRequest, options: RunOptions | None = None) -> dict[str, Any]:
    """Any run: a teacher, a student (alone or distilled) or a matcher."""
    if request.kind == "matcher":
        return train_matcher(request, options)
    if request.kind == "teacher":
        return train_classifier(request, options)
    return train_student(request, options)


def train_classifier(request: RunRequest, options: RunOptions | None = None) -> dict[str, Any]:
    """Train the MS teacher (a teacher request) or the RGB student without KD (a student of method none)."""
    request = resolved(request)
    role = "teacher" if request.kind == "teacher" else "student"
    arch = canonical_arch(request.arch)
    data = run_dataset(request)
    spec = _classifier_spec(data, request, arch, role)
    modality = spec.test_modality
    meta = dataset_meta(data, modality)

    def build_task(rt: Runtime, cfg: OptimConfig):
        datasets = [data.split(modality, split) for split in (spec.splits.fit, spec.splits.select)]
        backbone = build_backbone(arch, len(meta["bands"]), len(meta["classes"]), spec.config["width"],
                                  spec.config["heads"])
        choices = spec.config["options"]
        return ClassifierTask(backbone, *datasets, cfg, spec.section.get("augment", []), spec.config["seed"], rt,
                              choices["multilabel_f1"], choices["multilabel_selection"]), backbone

    return execute(spec, options or RunOptions(), build_task)


def loss_weights(section: dict[str, Any], method_spec: dict[str, Any], choices: dict[str, Any],
                 sembridge: dict[str, Any] | None) -> dict[str, float]:
    """A student's loss weights, resolved here only: its profile section's, a baseline's own where the
    profile asks for per-method weights (`options.baseline_weights`), and under SemBridge (its
    `settings`) the KD weight lambda1 and the OT terms' weight by `options.ot_weight`: the profile's
    `ot` for every lambda1 (`reference`, the reference code's constant 0.3), or the paper's
    lambda2 = 1 - lambda1 (`one-minus-lambda1`, Eq. 20's text). Either way every weight is >= 0."""
    weights = dict(section["loss_weights"])
    if sembridge is None:
        if choices["baseline_weights"] == "per-method":
            weights.update(method_spec["alone_weights"])
        return weights
    lambda1 = float(sembridge["lambda1"])
    rule = choices["ot_weight"]
    if rule == "one-minus-lambda1" and not 0.0 <= lambda1 <= 1.0:
        raise AckdError(f"--lambda1 {lambda1:g}: expected a value in [0, 1] under options.ot_weight "
                        f"one-minus-lambda1, whose OT weight 1 - lambda1 would be negative")
    ot = float(weights["ot"]) if rule == "reference" else 1.0 - lambda1
    if lambda1 < 0 or ot < 0:
        raise AckdError(f"SemBridge's loss weights: lambda1 {lambda1:g} and OT weight {ot:g}: expected both >= 0")
    return {**weights, "kd": lambda1, "ot": ot}


def published_at(spec: dict[str, Any]) -> dict[str, str | None]:
    """A method's paper and code URLs (from its YAML), for its result records."""
    return {"paper_url": spec.get("paper_url"), "code_url": spec.get("code_url")}


def matcher_spec(request: RunRequest) -> RunSpec:
    request = resolved(request)
    data = run_dataset(request)
    sembridge = sembridge_defaults()
    defaults = sembridge["matcher"]
    arch = canonical_arch(request.arch or defaults["arch"])
    section, seed, profile_data = _profile_section(request, "matcher")
    options = profile_data["options"]
    meta = dataset_meta(data, "ms")
    rgb_bands = data.manifest.modalities["ms"].rgb_bands
    params = {"dim": defaults["dim"], "dropout": defaults["dropout"], **sembridge["matcher_losses"][options["matcher_loss"]],
              "pseudo_rgb": options["pseudo_rgb"], "heads": options["heads"]}
    if options["matcher_checkpoint"] == "first-epoch":
        # the reference keeps epoch 1's matcher (train_matcher.py:79, 123-126); later epochs cannot
        # change it, so they are not run
        section = {**section, "epochs": 1}
    return RunSpec(
        data=data, request=request, section=section,
        config={"kind": "matcher", "arch": arch, "matcher_params": params, "seed": seed,
                **_profile_config(profile_data), "optim": section,
                "rgb_bands": None if rgb_bands is None else list(rgb_bands), **meta},
        label=f"matcher-{short_arch(arch)}-s{seed}",
        checkpoint_meta={**meta, "kind": "matcher", "arch": arch, "matcher_params": params},
    )


def train_matcher(request: RunRequest, options: RunOptions | None = None) -> dict[str, Any]:
    """SSM's matcher: MS and pseudo-RGB encoders trained contrastively on MS images (the protocol's
    fit split), the epoch selected on its select split."""
    from .matcher import MatcherTask, build_matcher

    spec = matcher_spec(request)
    manifest = spec.data.manifest
    # a band missing from the MS bands fed stops here
    build_matcher(manifest, spec.config["arch"], spec.config["matcher_params"], spec.data.ms_bands)

    def build_task(rt: Runtime, cfg: OptimConfig):
        train, val = (spec.data.split("ms", s) for s in (spec.splits.fit, spec.splits.select))
        matcher = build_matcher(manifest, spec.config["arch"], spec.config["matcher_params"], spec.data.ms_bands)
        return MatcherTask(matcher, train, val, cfg, spec.section.get("augment", []), spec.config["seed"], rt), None

    def finish(rt: Runtime, fit: FitResult, run_dir: Path) -> MatcherResult:
        return MatcherResult(
            dataset=manifest.dataset, dataset_version=manifest.dataset_version, arch=spec.config["arch"],
            seed=spec.config["seed"], profile=spec.config["profile"], epochs=spec.section["epochs"],
            protocol=spec.protocol, val_top1=fit.best_val["top1"], val_clip_loss=fit.best_val["clip_loss"],
            config_hash=spec.digest, code_version=code_version(), device=device_name(rt), precision=rt.precision)

    return execute(spec, options or RunOptions(), build_task, finish)


def train_student(request: RunRequest, options: RunOptions | None = None) -> dict[str, Any]:
    """An RGB student: alone (`none`), distilled by a baseline loss with naive same-class pairing
    (`kd`, `dkd`, ...), or with SemBridge on top of a baseline (`sembridge`, `sembridge+dkd`, ...)."""
    parsed = parse_method(load_outside(request.method) if ":" in request.method else request.method)
    method = parsed.name
    if request.ablation and not parsed.sembridge:
        raise AckdError(f"--ablate {','.join(request.ablation)}: switches off SemBridge components, but --method "
                        f"{method} has none; use --method sembridge[+LOSS]")
    if parsed.teacher_run:
        raise AckdError("--method teacher: teachers are trained with train-teacher")
    request = replace(request, method=method, ablation=tuple(parse_ablation(request.ablation)))
    if method == "none":
        return train_classifier(request, options)
    request = resolved(request)
    options = options or RunOptions()
    arch = canonical_arch(request.arch)
    data = run_dataset(request)
    manifest = data.manifest
    kd_loss, sembridge = parsed.loss, parsed.sembridge
    section, seed, profile_data = _profile_section(request, "student")
    # options that change the experiment rename its profile, as --set does
    renamed(profile_data, [f"methods.{kd_loss}.{k}={v}" for k, v in sorted(request.method_params.items())]
            + [f"sembridge.{k}={v}" for k, v in sorted(request.sembridge.params().items())]
            + ([f"sembridge.dynm={','.join(map(str, request.sembridge.dynm))}"] if request.sembridge.dynm else []))
    choices = profile_data["options"]
    method_spec = load_method_defaults(kd_loss)
    params = {**method_spec["params"], **profile_data["methods"].get(kd_loss, {}), **request.method_params}
    teacher_path = require_teacher(request.teacher, method)
    # loaded (metadata and weights checked) before the run directory exists: a bad file leaves nothing
    teacher_model, teacher_state = load_teacher(teacher_path, manifest, data.ms_bands)
    bridge = sembridge_run(request, data, choices, int(section["epochs"])) if sembridge else None
    weights = loss_weights(section, method_spec, choices, bridge.settings if bridge else None)
    meta = dataset_meta(data, "rgb")
    teacher_short, short = short_arch(teacher_state["arch"]), short_arch(arch)
    settings = backbone_settings(arch, choices)
    config = {"kind": "student", "method": method, "kd_loss": kd_loss, "method_params": params, "arch": arch,
              **settings, "seed": seed, **_profile_config(profile_data), "optim": section,
              "loss_weights": weights, "teacher_sha256": sha256_file(teacher_path),
              **({"method_source": source} if (source := method_source(kd_loss)) else {}),
              "teacher_arch": teacher_state["arch"], **meta}
    if bridge:
        config.update({"sembridge": bridge.settings, "ablation": list(request.ablation)})
    config["pairing"] = "sembridge" if sembridge else "random-same-class"
    ablation = request.ablation
    label = f"student-{short}-{method}" + (f"-no-{'-'.join(ablation)}" if ablation else "") + f"-T{teacher_short}-s{seed}"
    spec = RunSpec(
        data=data, request=request, config=config, section=section, label=label,
        checkpoint_meta=model_meta("student", arch, settings, meta),
        record=run_identity(method, teacher=teacher_short, student=short, kd_loss=kd_loss, sembridge=sembridge,
                            ablation=ablation, teacher_sha256=config["teacher_sha256"],
                            published=published_at(sembridge_defaults() if sembridge else method_spec)),
    )

    def build_task(rt: Runtime, cfg: OptimConfig):
        rgb_train, rgb_val = (data.split("rgb", s) for s in (spec.splits.fit, spec.splits.select))
        ms_train = data.split("ms", gallery_split(spec.protocol, choices["ms_gallery"]))  # the partners' side
        cached = options.teacher_mode == "cache"
        cache = build_or_load_cache(teacher_path, ms_train, rt, cfg.batch_size) if (cached or sembridge) else None
        if cached:
            source = TeacherSource(rt, cache=cache)
        else:
            source = TeacherSource(rt, teacher=rt.place_module(teacher_model))
        backbone = build_backbone(arch, len(meta["bands"]), len(meta["classes"]), **settings)
        distiller = build_distiller(kd_loss, len(meta["classes"]), params)
        alignment = bridge.alignment() if bridge else None
        module = StudentModule(backbone, distiller, weights, alignment, choices["loss_precision"])
        task = DistillationTask(module, rgb_train, rgb_val, ms_train, source, cfg, section.get("augment", []), seed, rt,
                                log_transport_cost=options.log_transport_cost)
        if bridge:
            task.pairing = bridge.pairing(task, cache, rt, cfg, seed)
        return task, backbone

    return execute(spec, options, build_task)
