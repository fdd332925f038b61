"""Distillation losses by name: the built-in baselines, and outside ones.

An outside distiller is a `Distiller` subclass with a `name`, published by another package under
the entry-point group `ackd_bench.methods` (`mykd = "mypkg.losses:MyKD"`), or named on the command
line as `--method mypkg.losses:MyKD` (an importable module, e.g. a file in the working
directory). Its defaults are a YAML file beside its module, `<name>.yaml`, in the same form as
`baselines/*.yaml`: `params` (constructor defaults), `alone_weights` (its own CE:KD weights) and
`citation`, `paper_url`, `code_url`.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..errors import AckdError
from ..experiment import BUILTIN_LOSSES, LOSS_NAME
from ..resources import resource_file
from ..untrusted import load_yaml
from .base import Distiller

ENTRY_POINT_GROUP = "ackd_bench.methods"


def _builtin(name: str) -> type[Distiller]:
    """The class named `name` in its module ackd_bench/methods/<name>.py."""
    module = importlib.import_module(f"{__package__}.{name}")
    found = [obj for obj in vars(module).values()
             if inspect.isclass(obj) and issubclass(obj, Distiller) and getattr(obj, "name", None) == name]
    if len(found) != 1:
        raise AckdError(f"ackd_bench/methods/{name}.py: expected one Distiller named '{name}', found {len(found)}")
    return found[0]


BASELINES: dict[str, type[Distiller]] = {name: _builtin(name) for name in BUILTIN_LOSSES}
_LOADED: dict[str, type[Distiller]] = {}  # outside distillers named as module:Class in this process


def _check_class(obj: Any, where: str) -> type[Distiller]:
    if not (inspect.isclass(obj) and issubclass(obj, Distiller)):
        raise AckdError(f"{where}: expected a subclass of ackd_bench.methods.Distiller, got {obj!r}")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not LOSS_NAME.fullmatch(name) or name in BASELINES:
        raise AckdError(f"{where}: its `name` must be a new lower-case method name (not {name!r})")
    return obj


def load_outside(spec: str) -> str:
    """`package.module:Class` -> the distiller's name, after importing it into this process."""
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AckdError(f"--method {spec}: cannot import {module_name} ({exc})") from None
    cls = _check_class(getattr(module, class_name, None), f"--method {spec}")
    _LOADED[cls.name] = cls
    return cls.name


def outside_methods() -> dict[str, str]:
    """Outside distillers that installed packages publish: name -> `module:Class`."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def distiller_class(name: str) -> type[Distiller]:
    if name in BASELINES:
        return BASELINES[name]
    if name in _LOADED:
        return _LOADED[name]
    published = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not published:
        known = [*BASELINES, *outside_methods()]
        raise AckdError(f"unknown distillation method '{name}': expected one of none, {', '.join(known)} "
                        f"(or an installed package's `{ENTRY_POINT_GROUP}` entry point, or --method module:Class)")
    try:
        cls = published[0].load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin is one line, not a traceback
        raise AckdError(f"method '{name}': loading {published[0].value} failed ({exc})") from None
    cls = _check_class(cls, f"entry point {name} = {published[0].value}")
    if cls.name != name:
        raise AckdError(f"entry point {name} = {published[0].value}: the class is named '{cls.name}'")
    return cls


def method_source(name: str) -> str | None:
    """Where an outside distiller comes from (`module:Class`, with its package's version), for a
    run's config; None for a built-in one, which the code version covers."""
    if name in BASELINES:
        return None
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    cls = distiller_class(name)
    top = cls.__module__.split(".")[0]
    distributions = packages_distributions().get(top, [])
    try:
        release = f" ({distributions[0]} {version(distributions[0])})" if distributions else " (local module)"
    except PackageNotFoundError:
        release = ""
    return f"{cls.__module__}:{cls.__qualname__}{release}"


def _defaults_file(name: str) -> Path:
    if name in BASELINES:
        try:
            return resource_file("methods", f"{name}.yaml")
        except FileNotFoundError as exc:
            raise AckdError(f"not found: {exc}") from None
    module_file = inspect.getsourcefile(distiller_class(name))
    path = Path(module_file).with_name(f"{name}.yaml") if module_file else None
    if path is None or not path.is_file():
        raise AckdError(f"method '{name}': its defaults file {path or name + '.yaml'} (beside its module) is missing")
    return path


def load_method_defaults(name: str) -> dict[str, Any]:
    """The method's YAML: `params` (constructor defaults), `alone_weights`, `citation`, URLs."""
    path = _defaults_file(name)
    spec = load_yaml(path.read_text(), str(path))
    if not isinstance(spec, dict) or not isinstance(spec.get("params"), dict):
        raise AckdError(f"{path}: expected a mapping with a 'params' mapping")
    weights = spec.get("alone_weights")
    if not (isinstance(weights, dict) and set(weights) == {"task", "kd"}):
        raise AckdError(f"{path}: expected 'alone_weights: {{task: W, kd: W}}' (the method's own CE:KD weights)")
    for key in ("paper_url", "code_url"):
        if spec.get(key) is not None and not str(spec[key]).startswith("https://"):
            raise AckdError(f"{path}: {key} must be an https:// URL")
    return spec


def build_distiller(name: str, num_classes: int, overrides: dict[str, Any] | None = None) -> Distiller:
    params = {**load_method_defaults(name)["params"], **(overrides or {})}
    try:
        return distiller_class(name)(num_classes, **params)
    except (TypeError, ValueError) as exc:
        raise AckdError(f"{_defaults_file(name)}: bad parameter ({exc})") from None
