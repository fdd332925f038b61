"""Training profiles (`recipes/profiles/NAME.yaml`): optimiser, schedule, loss weights and the
fidelity options, as data.

A profile is named (a packaged one, or one in $ACKD_BENCH_PROFILES) or given as a path to a YAML
file of the same form. `--set section.key=value` changes one value after loading (the value is read
as YAML): `student.epochs=50`, `options.matcher_loss=reference`, `methods.dkd.beta=4`, `seed=1`.
A profile may `extends:` another; its mappings are merged into the parent's, key by key. The
`options` section names every choice where the paper's reference code and this project differ
(docs/FIDELITY.md has one row per option); `methods` overrides a distiller's `baselines/*.yaml`
parameters. Both enter every run's config, and so its hash.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from ..data.bands import BAND_SETS
from ..data.splits import PROTOCOLS
from ..errors import AckdError
from ..provenance import config_hash
from ..resources import resource_dirs
from ..untrusted import NUMBER, load_yaml, typed

SECTIONS = ("teacher", "student", "matcher")

# option -> the values it takes; the first is the `paper` profile's, which is the reference code's for
# every option but `protocol`: there `paper` and `bench` both keep `heldout` (a test set reported
# once), so that a published cell never comes from selecting on the reported split unless asked for
OPTIONS: dict[str, tuple[Any, ...]] = {
    "dynm_divergence": ("teacher-student", "student-teacher"),  # KL(p_T||p_S) as the code; KL(p_S||p_T) as Eq. 10
    "dynm_epochs": ("reference", "eq12"),  # main_config.py's lists; Eq. 12 continued to the last epoch
    # Eq. 11's least divergent teacher per student; the least total divergence with each teacher
    # partnering at most ceil(N_c / M_c) students of a class (methods/sembridge/matching.py)
    "dynm_assignment": ("argmin", "balanced"),
    # the reference's unnormalised covariances over 4 d^3; Sun & Saenko's over (B - 1)^2 4 d^2 (coral.py)
    "coral": ("reference", "covariance"),
    # SemBridge's OT weight: the profile's `ot` for every lambda_1 (the reference's constant); the
    # paper's lambda_2 = 1 - lambda_1 (Eq. 20's text), lambda_1 in [0, 1]
    "ot_weight": ("reference", "one-minus-lambda1"),
    "baseline_weights": ("per-method", "shared"),  # each distiller's own CE:KD; the profile's task/kd for all
    "shufflenet_width": (0.5, 1.0),
    "multilabel_f1": ("macro-logit-0.5", "samples"),  # val.py; sample-averaged F1 at sigmoid >= 0.5
    "loss_precision": ("fp32", "autocast"),
    "matcher_loss": ("reference", "normalised"),
    # the reference's (raw 0-255 on S2S, the MS input's first bands on M2S-GL); the image-max form
    # `paper` used before it; the MS input's R, G, B bands
    "pseudo_rgb": ("reference", "first-bands-image-max", "rgb-bands"),
    "matcher_checkpoint": ("first-epoch", "best-val"),  # train_matcher.py:79, 123-126 keeps epoch 1's
    "heads": ("reference", "projected"),  # models/backbones.py
    "multilabel_selection": ("subset-accuracy", "f1"),  # train_teacher.py:162-177 with val.py:49
    "forward_precision": ("fp32", "auto"),  # no autocast in the reference; `auto`: --precision decides
    "ms_gallery": ("all", "train"),  # the MS images partners come from (data/splits.py gallery_split)
    "protocol": tuple(PROTOCOLS),  # what runs fit, select and report on (data/splits.py); "reference" is the code's
    "ms_bands": BAND_SETS,  # the recipe's band set fed to MS models: utils/dataset.py:86's, or the recipe's own
}

# what a run recorded before an option existed did: its recorded profile is read with these
LEGACY_OPTIONS: dict[str, Any] = {"matcher_checkpoint": "best-val", "heads": "projected", "multilabel_selection": "f1",
                                  "forward_precision": "auto", "protocol": "heldout",
                                  "ms_gallery": "train", "ms_bands": "recipe", "dynm_assignment": "argmin",
                                  "coral": "reference", "ot_weight": "reference"}


# every key a profile may hold, with the types its readers rely on
TOP_LEVEL = ("name", "seed", "extends", "options", "methods", *SECTIONS)
SECTION_KEYS: dict[str, tuple[type, ...]] = {"optimizer": (str,), "lr": NUMBER, "weight_decay": NUMBER,
                                             "batch_size": (int,), "epochs": (int,), "scheduler": (str,),
                                             "augment": (list,)}
STUDENT_KEYS: dict[str, tuple[type, ...]] = {"loss_weights": (dict,)}
LOSS_WEIGHTS = ("task", "kd", "ot", "ot_scale")
LOSS_WEIGHT_BOUND = 1e3
AUGMENTATIONS = ("hflip", "vflip")


def check_schema(profile: dict[str, Any], path: str) -> None:
    """Unknown keys, and values of the wrong type, are errors that name the valid ones."""
    unknown = sorted(set(profile) - {*TOP_LEVEL, "set"})
    if unknown:
        raise AckdError(f"{path}: unknown key(s) {', '.join(map(str, unknown))}: expected some of {', '.join(TOP_LEVEL)}")
    if not typed(profile.get("seed", 0), (int,)) or not 0 <= profile.get("seed", 0) < 2**32:
        raise AckdError(f"{path}: seed is {profile.get('seed')!r}: expected an integer from 0 to 2**32 - 1")
    for section in SECTIONS:
        keys = {**SECTION_KEYS, **(STUDENT_KEYS if section == "student" else {})}
        if not isinstance(profile[section], dict):
            raise AckdError(f"{path}: '{section}' must be a mapping of {', '.join(keys)}")
        for key, value in profile[section].items():
            if key not in keys:
                raise AckdError(f"{path}: unknown key {section}.{key}: expected one of "
                                f"{', '.join(f'{section}.{k}' for k in keys)}")
            if not typed(value, keys[key]):
                raise AckdError(f"{path}: {section}.{key} is {value!r}: expected "
                                f"{' or '.join(k.__name__ for k in keys[key])}")
        augment = profile[section].get("augment", [])
        if any(a not in AUGMENTATIONS for a in augment):
            raise AckdError(f"{path}: {section}.augment is {augment!r}: expected a list of {', '.join(AUGMENTATIONS)}")
        weights = profile[section].get("loss_weights", {w: 0.0 for w in LOSS_WEIGHTS})
        if set(weights) - set(LOSS_WEIGHTS) or not all(typed(v, NUMBER) for v in weights.values()):
            raise AckdError(f"{path}: {section}.loss_weights must map some of {', '.join(LOSS_WEIGHTS)} to numbers")
        for name, value in weights.items():
            if not 0 <= float(value) <= LOSS_WEIGHT_BOUND:  # a negative weight would maximise its term
                raise AckdError(f"{path}: {section}.loss_weights.{name} is {value!r}: expected a number in "
                                f"[0, {LOSS_WEIGHT_BOUND:g}]")
    for method, params in profile["methods"].items():
        check_method_params(str(method), params, path)


def check_method_params(method: str, params: Any, path: str) -> None:
    """A loss's parameters (a profile's `methods.METHOD`, a request's `method_params`): known keys, each
    of its default's type and, for numbers, finite and within METHOD_PARAM_BOUND."""
    from ..methods import load_method_defaults

    defaults = load_method_defaults(method)["params"]  # an unknown method is an error naming the known
    if not isinstance(params, dict):
        raise AckdError(f"{path}: methods.{method} is {repr(params)[:60]}: expected a mapping of parameters")
    for key, value in params.items():
        if key not in defaults:
            raise AckdError(f"{path}: unknown parameter methods.{method}.{str(key)[:60]}: expected one of "
                            f"{', '.join(f'methods.{method}.{k}' for k in defaults)}")
        expected = NUMBER if typed(defaults[key], NUMBER) else (type(defaults[key]),)
        if defaults[key] is not None and not typed(value, expected):
            raise AckdError(f"{path}: methods.{method}.{key} is {repr(value)[:60]}: expected "
                            f"{' or '.join(k.__name__ for k in expected)} like its default {defaults[key]!r}")
        if typed(value, NUMBER) and not (math.isfinite(value) and abs(value) <= METHOD_PARAM_BOUND):
            raise AckdError(f"{path}: methods.{method}.{key} is {repr(value)[:60]}: expected a finite number of "
                            f"magnitude at most {METHOD_PARAM_BOUND:g}")


def renamed(profile: dict[str, Any], changes: list[str]) -> None:
    """A profile changed by --set or by an option (--lr, --gamma, ...) is another experiment: it is
    named apart (`NAME+set-<hash>`), so a board never mixes it with the profile as published."""
    if not changes:
        return
    profile["set"] = [*profile.get("set", []), *changes]
    base = profile["name"].split("+set-")[0]
    profile["name"] = f"{base}+set-{config_hash({'set': profile['set']})[:8]}"


def profile_names() -> list[str]:
    return sorted({p.stem for d in resource_dirs("profiles") for p in d.glob("*.yaml")})


def is_profile_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name


def _profile_file(name: str) -> Path:
    if is_profile_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise AckdError(f"--profile {name}: no such file")
        return path
    for directory in resource_dirs("profiles"):
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    raise AckdError(f"unknown training profile '{name}': expected one of {', '.join(profile_names())}")


def _merged(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


METHOD_PARAM_BOUND = 1e6  # temperatures, weights and margins are below 1e3 in every loss's paper
MAX_EXTENDS = 8  # the project's longest chain is 2 (paper -> bench)


def _parent_name(parent: Any, path: Path) -> str:
    """What `extends:` names: a profile by plain name, a sibling file `NAME.yaml` of the extending
    profile first, else a built-in profile. Never a path: a profile sent by somebody must not make
    the tool read (and quote in its errors) any file it names."""
    from ..untrusted import plain_name

    name = plain_name(parent, f"{path}: extends")
    sibling = path.parent / f"{name}.yaml"
    return str(sibling) if sibling.is_file() and sibling != path else name


def _raw_profile(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name in seen:
        raise AckdError(f"training profile '{name}' extends itself (through {' -> '.join(seen)})")
    if len(seen) >= MAX_EXTENDS:
        raise AckdError(f"training profile '{seen[0]}': its extends: chain is longer than {MAX_EXTENDS} profiles")
    path = _profile_file(name)
    profile = load_yaml(path.read_text(errors="replace"), str(path))
    if not isinstance(profile, dict):
        raise AckdError(f"{path}: expected a mapping")
    parent = profile.pop("extends", None)
    if parent is not None:
        profile = _merged(_raw_profile(_parent_name(parent, path), (*seen, name)), profile)
    if is_profile_path(name):  # any file may be called paper.yaml: named by its content too
        import hashlib

        from ..untrusted import plain_name

        stem = plain_name(path.stem, f"--profile {name}: its file name")
        profile["name"] = f"{stem}@{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
    else:
        profile["name"] = name
    profile.setdefault("_path", str(path))
    return profile


def check_options(options: Any, path: str) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise AckdError(f"{path}: missing 'options' mapping ({', '.join(OPTIONS)})")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise AckdError(f"{path}: unknown option(s) {', '.join(unknown)}: expected some of {', '.join(OPTIONS)}")
    for key, allowed in OPTIONS.items():
        if key not in options:
            raise AckdError(f"{path}: options.{key} is missing: expected one of {', '.join(map(str, allowed))}")
        if options[key] not in allowed:
            raise AckdError(f"{path}: options.{key} is {options[key]!r}: expected one of {', '.join(map(str, allowed))}")
    return options


def apply_sets(profile: dict[str, Any], sets: list[str] | tuple[str, ...], path: str) -> None:
    """`section.key=value` assignments, each checked against the profile's own structure."""
    for assignment in sets:
        key, sep, text = assignment.partition("=")
        shown = assignment if len(assignment) <= 100 else f"{assignment[:100]}..."  # a value may be huge
        parts = key.strip().split(".")
        if not sep or not all(parts) or parts[0] not in (*SECTIONS, "options", "methods", "seed"):
            raise AckdError(f"--set {shown}: expected SECTION.KEY=VALUE with SECTION one of "
                            f"{', '.join((*SECTIONS, 'options', 'methods'))} (or seed=N)")
        value = load_yaml(text, f"--set {shown}")
        target = profile
        for part in parts[:-1]:
            target = target.setdefault(part, {}) if parts[0] == "methods" else target.get(part)
            if not isinstance(target, dict):
                raise AckdError(f"--set {shown}: {path} has no section {'.'.join(parts[:-1])}")
        if parts[0] in SECTIONS and parts[-1] not in target and parts[-1] != "augment":
            raise AckdError(f"--set {shown}: {path} has no {key.strip()} (expected one of "
                            f"{', '.join(f'{parts[0]}.{k}' for k in target)})")
        target[parts[-1]] = value
    renamed(profile, list(sets))


def load_profile(name: str | dict[str, Any], overrides: dict[str, dict[str, Any]] | None = None,
                 sets: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A profile by name or path (or one already loaded), with `--set` assignments and per-section
    overrides (e.g. {"student": {"epochs": 5}})."""
    if isinstance(name, dict):  # loaded (and checked) before, e.g. by the CLI with --set
        profile = copy.deepcopy(name)
    else:
        profile = _checked(name, sets)
    changes = []
    for section, values in (overrides or {}).items():
        given = {k: v for k, v in values.items() if v is not None}
        profile[section].update(given)
        # --epochs keeps the name: the board keys rows by profile and epochs; any other change renames
        changes += [f"{section}.{k}={v}" for k, v in sorted(given.items()) if k != "epochs"]
    renamed(profile, changes)
    return profile


MAX_EPOCHS, MAX_BATCH = 100_000, 1_000_000  # beyond these a recorded profile is crafted, not a schedule


def check_loaded(profile: Any, path: str) -> dict[str, Any]:
    """A profile recorded as loaded (a run's request.json), read back as untrusted input: the checks
    of a profile file, its name a profile name, and schedules of bounded length. An option recorded
    before it existed reads as what such runs did (LEGACY_OPTIONS)."""
    from ..results import PROFILE_NAME

    if not isinstance(profile, dict):
        raise AckdError(f"{path}: the profile must be recorded as loaded (a mapping)")
    if isinstance(profile.get("options"), dict):
        profile["options"] = {**LEGACY_OPTIONS, **profile["options"]}
    _check_profile(profile, path)
    if not isinstance(profile.get("name"), str) or not PROFILE_NAME.fullmatch(profile["name"]):
        raise AckdError(f"{path}: the profile's name is {str(profile.get('name'))[:40]!r}: expected a profile name")
    if not all(isinstance(s, str) for s in profile.get("set", [])):
        raise AckdError(f"{path}: the profile's 'set' must list assignments")
    for section in SECTIONS:
        epochs, batch = profile[section].get("epochs", 1), profile[section].get("batch_size", 1)
        if not (1 <= epochs <= MAX_EPOCHS and 1 <= batch <= MAX_BATCH):
            raise AckdError(f"{path}: {section}.epochs {epochs} / batch_size {batch}: expected 1 to {MAX_EPOCHS} / "
                            f"1 to {MAX_BATCH}")
    return profile


def _checked(name: str, sets: list[str] | tuple[str, ...]) -> dict[str, Any]:
    profile = _raw_profile(name)
    path = profile.pop("_path")
    if sets:
        path = f"{path} with --set {', '.join(sets)}"
    apply_sets(profile, sets, path)
    _check_profile(profile, path)
    return profile


def _check_profile(profile: dict[str, Any], path: str) -> None:
    """What every profile must hold, from a file or recorded by a run: its sections, its options, its
    method overrides, each key of the type its readers rely on."""
    missing = [s for s in SECTIONS if s not in profile]
    if missing:
        raise AckdError(f"{path}: missing section(s) {', '.join(missing)}")
    check_options(profile.get("options"), path)
    methods = profile.setdefault("methods", {})
    if not isinstance(methods, dict) or not all(isinstance(v, dict) for v in methods.values()):
        raise AckdError(f"{path}: 'methods' must map a method name to its parameter overrides")
    check_schema(profile, path)
