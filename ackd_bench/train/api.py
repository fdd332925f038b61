"""Entry points that the CLI and tests call: train a teacher or a student on a built dataset."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.dataset import ShardDataset
from ..data.manifest import verify_manifest
from ..models import build_backbone, canonical_arch
from ..models.backbones import short_arch
from ..methods import build_distiller, load_method_defaults
from ..provenance import code_version, config_hash, sha256_file, write_json_atomic
from ..results import make_record, write_result
from .classifier import ClassifierTask
from .student import DistillationTask, StudentModule, TeacherSource
from .teacher_cache import build_or_load_cache, load_teacher, require_teacher
from .distributed import init_from_env, shutdown
from .engine import Engine, OptimConfig, Runtime, resolve_device, seed_everything
from .profiles import load_profile
from .runs import device_name, evaluate, prepare_run_dir


@dataclass
class RunOptions:
    """How to run, as opposed to what to run (does not enter the config hash)."""

    run_dir: Path | None = None
    runs_root: Path = Path("runs")
    resume: bool = False
    force: bool = False
    device: str = "auto"
    workers: int | None = None
    progress: bool = True


def make_runtime(options: RunOptions) -> Runtime:
    device = resolve_device(options.device)
    ctx = init_from_env(device.type)
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    workers = options.workers if options.workers is not None else (4 if device.type == "cuda" else 0)
    return Runtime(device=device, ctx=ctx, workers=workers, progress=options.progress)


def dataset_meta(manifest: dict[str, Any], modality: str) -> dict[str, Any]:
    spec = manifest["modalities"][modality]
    return {
        "dataset": manifest["dataset"], "dataset_version": manifest["dataset_version"], "modality": modality,
        "bands": list(spec["bands"]), "classes": list(manifest["classes"]), "multilabel": bool(spec["multilabel"]),
    }


def resolve_run_dir(options: RunOptions, dataset: str, label: str, digest: str) -> Path:
    return Path(options.run_dir) if options.run_dir else Path(options.runs_root) / dataset / f"{label}-{digest[:8]}"


@dataclass
class RunSpec:
    """What a run is: its config (hashed), how to build its task, and its record's identity."""

    manifest: dict[str, Any]
    config: dict[str, Any]
    label: str
    section: dict[str, Any]
    checkpoint_meta: dict[str, Any]
    record: dict[str, Any]  # method, kd_loss, sembridge, ablation, teacher, student
    test_modality: str


def execute(spec: RunSpec, options: RunOptions, build_task) -> dict[str, Any]:
    """The part every run shares: run dir, seeding, engine, selection on val, one test evaluation,
    and the result record. `build_task(runtime, cfg)` returns (task, backbone evaluated on test)."""
    started = time.time()
    manifest, seed = spec.manifest, spec.config["seed"]
    digest = config_hash(spec.config)
    run_dir = resolve_run_dir(options, manifest["dataset"], spec.label, digest)
    rt = make_runtime(options)
    try:
        if rt.ctx.is_main:
            prepare_run_dir(run_dir, resume=options.resume, force=options.force)
            write_json_atomic(run_dir / "config.json", {**spec.config, "config_hash": digest})
        seed_everything(seed)
        cfg = OptimConfig.from_dict(spec.section)
        task, backbone = build_task(rt, cfg)
        meta = {**spec.checkpoint_meta, "config": spec.config, "config_hash": digest, "code_version": code_version()}
        engine = Engine(task, cfg, rt, run_dir, meta)
        fit = engine.fit(resume=options.resume)
        engine.load_best()
        test = ShardDataset(manifest["_root"], spec.test_modality, "test", manifest=manifest)
        test_metrics = evaluate(backbone, test, rt, cfg.batch_size)
        record = make_record(
            dataset=manifest["dataset"], dataset_version=manifest["dataset_version"], **spec.record,
            seed=seed, epochs=cfg.epochs, oa=test_metrics["oa"], f1=test_metrics["f1"],
            val_oa=fit.best_val.get("oa"), val_f1=fit.best_val["f1"], n_test=test_metrics["n"],
            config_hash=digest, code_version=code_version(), wall_seconds=round(time.time() - started, 3),
            device=device_name(rt),
        )
        if rt.ctx.is_main:
            write_result(run_dir, record)
        return {**record, "run_dir": str(run_dir), "best_epoch": fit.best_epoch}
    finally:
        shutdown(rt.ctx)


def load_dataset(dataset_dir: str | Path) -> dict[str, Any]:
    manifest = verify_manifest(dataset_dir, checksums=False)
    return {**manifest, "_root": str(dataset_dir)}


def train_classifier(dataset_dir: str | Path, arch: str, *, role: str, profile: str = "paper",
                     seed: int | None = None, overrides: dict[str, Any] | None = None,
                     options: RunOptions | None = None) -> dict[str, Any]:
    """Train the MS teacher (role 'teacher') or the RGB student without KD (role 'student')."""
    arch = canonical_arch(arch)
    manifest = load_dataset(dataset_dir)
    modality = "ms" if role == "teacher" else "rgb"
    profile_data = load_profile(profile, {role: overrides or {}})
    section = profile_data[role]
    seed = int(seed if seed is not None else profile_data["seed"])
    meta = dataset_meta(manifest, modality)
    method = "teacher" if role == "teacher" else "none"
    config = {"kind": role, "method": method, "arch": arch, "seed": seed, "profile": profile, "optim": section, **meta}
    short = short_arch(arch)
    spec = RunSpec(
        manifest=manifest, config=config, section=section, test_modality=modality,
        label=f"{role}-{short}" + ("" if role == "teacher" else "-none") + f"-s{seed}",
        checkpoint_meta={**meta, "kind": role, "arch": arch, "in_channels": len(meta["bands"]),
                         "num_classes": len(meta["classes"])},
        record={"method": method, "kd_loss": None, "sembridge": False, "ablation": "",
                "teacher": short if role == "teacher" else None, "student": None if role == "teacher" else short},
    )

    def build_task(rt: Runtime, cfg: OptimConfig):
        datasets = [ShardDataset(dataset_dir, modality, split, manifest=manifest) for split in ("train", "val")]
        backbone = build_backbone(arch, len(meta["bands"]), len(meta["classes"]))
        return ClassifierTask(backbone, *datasets, cfg, section.get("augment", []), seed, rt), backbone

    return execute(spec, options or RunOptions(), build_task)


def train_student(dataset_dir: str | Path, arch: str, *, method: str = "none", teacher: str | Path | None = None,
                  profile: str = "paper", seed: int | None = None, overrides: dict[str, Any] | None = None,
                  method_params: dict[str, Any] | None = None, teacher_mode: str = "cache",
                  options: RunOptions | None = None) -> dict[str, Any]:
    """An RGB student: alone (`none`) or distilled by a baseline loss from an MS teacher checkpoint,
    paired naively (random same-class MS sample per epoch)."""
    if method == "none":
        return train_classifier(dataset_dir, arch, role="student", profile=profile, seed=seed, overrides=overrides,
                                options=options)
    options = options or RunOptions()
    arch = canonical_arch(arch)
    manifest = load_dataset(dataset_dir)
    method_spec = load_method_defaults(method)
    params = {**method_spec["params"], **(method_params or {})}
    teacher_path = require_teacher(teacher, method)
    _, teacher_state = load_teacher(teacher_path, manifest)
    profile_data = load_profile(profile, {"student": overrides or {}})
    section = profile_data["student"]
    seed = int(seed if seed is not None else profile_data["seed"])
    meta = dataset_meta(manifest, "rgb")
    teacher_short, short = short_arch(teacher_state["arch"]), short_arch(arch)
    config = {"kind": "student", "method": method, "method_params": params, "arch": arch, "seed": seed,
              "profile": profile, "optim": section, "teacher_sha256": sha256_file(teacher_path),
              "teacher_arch": teacher_state["arch"], "pairing": "random-same-class", **meta}
    spec = RunSpec(
        manifest=manifest, config=config, section=section, test_modality="rgb",
        label=f"student-{short}-{method}-T{teacher_short}-s{seed}",
        checkpoint_meta={**meta, "kind": "student", "arch": arch, "in_channels": len(meta["bands"]),
                         "num_classes": len(meta["classes"])},
        record={"method": method, "kd_loss": method, "sembridge": False, "ablation": "",
                "teacher": teacher_short, "student": short},
    )

    def build_task(rt: Runtime, cfg: OptimConfig):
        rgb_train, rgb_val = (ShardDataset(dataset_dir, "rgb", s, manifest=manifest) for s in ("train", "val"))
        ms_train = ShardDataset(dataset_dir, "ms", "train", manifest=manifest)
        if teacher_mode == "cache":
            source = TeacherSource(rt, cache=build_or_load_cache(teacher_path, ms_train, rt, cfg.batch_size))
        else:
            live, _ = load_teacher(teacher_path, manifest)
            source = TeacherSource(rt, teacher=live.to(rt.device))
        backbone = build_backbone(arch, len(meta["bands"]), len(meta["classes"]))
        distiller = build_distiller(method, len(meta["classes"]), params)
        module = StudentModule(backbone, distiller, section["loss_weights"])
        task = DistillationTask(module, rgb_train, rgb_val, ms_train, source, cfg, section.get("augment", []), seed, rt)
        return task, backbone

    return execute(spec, options, build_task)
