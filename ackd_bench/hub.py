"""Built benchmarks, teachers and matchers on the Hugging Face hub (huggingface_hub; `HF_ENDPOINT`
and `HF_TOKEN` as that library reads them).

- `publish_dataset`: a built directory's shards, manifest and card become a dataset repository.
  Its README.md carries YAML metadata (the licence of every source, the task, the size) and
  DATASET.md's text; croissant.json holds Croissant metadata. The commit is tagged with the dataset
  version. A side whose source's licence does not allow redistribution is refused, naming the
  source and the licence, unless the user says they hold the rights.
- `download_dataset`: `ORG/NAME[@REV]` into a directory, through huggingface_hub's cache (which
  resumes interrupted files). Every shard is checked against the manifest before the directory
  appears.
- `resolve_checkpoint`: `hf://ORG/REPO/PATH[@REV]` to a local file in that cache.
- `publish_run`: a teacher or matcher run's best.pt, config and result, with a model card.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .data.card import render_card, source_parts
from .data.manifest import MANIFEST, Manifest, read_manifest, verify_manifest
from .errors import AckdError, bounded
from .results import ABSENT_DEFAULTS
from .untrusted import PLAIN_NAME

# licences under which a built side may be shared (prefixes of a source's `licence`)
REDISTRIBUTABLE = ("MIT", "CC0", "CC-BY-4.0", "CC-BY-SA-4.0", "CDLA-Permissive", "Apache-2.0")
HF_LICENCES = {"MIT": "mit", "CC0": "cc0-1.0", "CC-BY-4.0": "cc-by-4.0", "CC-BY-SA-4.0": "cc-by-sa-4.0",
               "CDLA-Permissive": "cdla-permissive-1.0", "Apache-2.0": "apache-2.0"}
DATASET_FILES = ("*.h5", MANIFEST, "DATASET.md", "README.md", "croissant.json")
# ASCII only (no look-alikes), and neither part may be "." or ".."
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


def parse_repo(spec: str) -> tuple[str, str | None]:
    """`ORG/NAME[@REV]` -> (repo id, revision or None)."""
    repo, _, revision = spec.partition("@")
    if not REPO_ID.fullmatch(repo) or (revision and not REVISION.fullmatch(revision)):
        raise AckdError(f"{spec}: expected ORG/NAME or ORG/NAME@REVISION (a hub repository)")
    return repo, revision or None


def _licence_id(licence: str) -> str | None:
    return next((HF_LICENCES[p] for p in REDISTRIBUTABLE if licence.startswith(p)), None)


def licence_check(sources: dict[str, dict[str, Any]], allow_restricted: bool) -> list[str]:
    """The hub licence ids of a build's sources; a source that may not be redistributed stops it."""
    ids = []
    for side, source in sources.items():
        for part in source_parts(source):
            licence = str(part.get("licence", "unknown"))
            hub_id = _licence_id(licence)
            if hub_id is None and not allow_restricted:
                raise AckdError(f"publish refused: the {side} side's source {part.get('name', '?')} is licensed "
                                f"'{licence}', which does not allow redistribution (pass --allow-restricted-licence "
                                "only if you hold the right to share it)")
            ids.append(hub_id or "other")
    return sorted(set(ids))


def _size_category(count: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if count < limit:
            return name
    return "n>1M"


def dataset_readme(manifest: Manifest, licences: list[str]) -> str:
    samples = manifest.samples()
    header = {
        "license": licences[0] if len(licences) == 1 else "other",
        "license_details": "; ".join(f"{side}: {part.get('name')} ({part.get('licence')})"
                                     for side, source in manifest.sources.items()
                                     for part in source_parts(source)),
        "task_categories": ["image-classification"],
        "size_categories": [_size_category(samples)],
        "tags": ["remote-sensing", "multispectral", "knowledge-distillation", "ackd-bench"],
        "pretty_name": f"ackd-bench {manifest.dataset}",
        "ackd_bench": {"dataset": manifest.dataset, "dataset_version": manifest.dataset_version,
                       "code_version": manifest.code_version},
    }
    body = render_card(manifest)
    return f"---\n{json.dumps(header, indent=1)}\n---\n\n{body}\n\nLoad it with `ackd-bench build {manifest.dataset} " \
           f"--from-hub ORG/NAME`, which checks every shard against `manifest.json`.\n"


def croissant(manifest: Manifest, repo: str) -> dict[str, Any]:
    """Croissant 1.0 metadata (mlcommons.org/croissant): the dataset and its files."""
    return {
        "@context": {"@language": "en", "@vocab": "https://schema.org/", "cr": "http://mlcommons.org/croissant/",
                     "sc": "https://schema.org/"},
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": f"ackd-bench-{manifest.dataset}",
        "description": f"The {manifest.dataset} benchmark of ackd-bench, version {manifest.dataset_version}.",
        "version": manifest.dataset_version,
        "license": [str(part.get("licence")) for source in manifest.sources.values()
                    for part in source_parts(source)],
        "url": f"https://huggingface.co/datasets/{repo}",
        "distribution": [{"@type": "cr:FileObject", "@id": entry.file, "name": entry.file,
                          "contentUrl": entry.file, "encodingFormat": "application/x-hdf5",
                          "sha256": entry.sha256} for entry in manifest.shards],
    }


def _api():
    from huggingface_hub import HfApi

    return HfApi()


@contextmanager
def hub_errors(what: str):
    """The hub's HTTP and connection errors, and answers the client library cannot parse (not JSON,
    fields missing or of other types), as one line naming what was being done. The blocks this wraps
    are calls of huggingface_hub only: its parsing errors are the hub's answer, not this tool's bug."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        yield
    except AckdError:
        raise
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AckdError(f"{what}: {bounded(message, 300)}") from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError) as exc:
        said = " ".join(str(exc).split()) or type(exc).__name__
        raise AckdError(f"{what}: the hub's answer was not understood ({type(exc).__name__}: {bounded(said, 200)})"
                        ) from None


def publish_dataset(dataset_dir: str | Path, repo: str, *, allow_restricted: bool = False,
                    private: bool = False) -> dict[str, str]:
    from huggingface_hub import CommitOperationAdd

    root = Path(dataset_dir)
    manifest = verify_manifest(root)  # never publish a damaged copy
    licences = licence_check(manifest.sources, allow_restricted)
    repo_id, _ = parse_repo(repo)
    api = _api()
    with hub_errors(f"publishing {root} to the hub's dataset {repo_id}"):
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    files = [MANIFEST, "DATASET.md", *(entry.file for entry in manifest.shards)]
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(root / name)) for name in files
                  if (root / name).is_file()]
    operations += [
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=dataset_readme(manifest, licences).encode()),
        CommitOperationAdd(path_in_repo="croissant.json",
                           path_or_fileobj=json.dumps(croissant(manifest, repo_id), indent=1).encode()),
    ]
    version = manifest.dataset_version
    tag = f"v-{version[:16]}"
    with hub_errors(f"publishing {root} to the hub's dataset {repo_id}"):
        commit = api.create_commit(repo_id, operations, repo_type="dataset",
                                   commit_message=f"{manifest.dataset} dataset version {version[:16]}")
        api.create_tag(repo_id, tag=tag, revision=commit.oid, repo_type="dataset", exist_ok=True)
    return {"repo": repo_id, "revision": commit.oid, "tag": tag}


def download_dataset(spec: str, target: str | Path, *, expect_dataset: str | None = None,
                     progress: bool = True) -> Manifest:
    """`ORG/NAME[@REV]` into `target`, verified; returns the manifest."""
    from huggingface_hub import snapshot_download

    repo_id, revision = parse_repo(spec)
    target = Path(target)
    if (target / MANIFEST).exists():
        raise AckdError(f"{target}: already holds a dataset; choose another directory or remove it")
    if not progress:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    with hub_errors(f"downloading the hub's dataset {spec}"):
        cached = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                        allow_patterns=list(DATASET_FILES)))
    manifest = read_manifest(cached)
    if expect_dataset is not None and manifest.dataset != expect_dataset:
        raise AckdError(f"{spec}: holds the {manifest.dataset} benchmark, not {expect_dataset}")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in [MANIFEST, "DATASET.md", *(entry.file for entry in manifest.shards)]:
        if not (cached / name).is_file():
            raise AckdError(f"{spec}: {name} is listed in {MANIFEST} but missing from the repository")
        _link_or_copy(cached / name, staging / name)
    try:
        verify_manifest(staging, progress=progress)  # every shard's size, sha256 and content, before anything trains
    except AckdError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise AckdError(f"the hub's {spec}: {str(exc).replace(str(staging) + '/', '')}") from None
    staging.rename(target)
    return manifest


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link to the cached blob where the cache shares the file system (a benchmark's shards
    need not take their space twice), else a copy."""
    try:
        os.link(source.resolve(), target)
    except OSError:
        shutil.copyfile(source, target)


def resolve_checkpoint(spec: str | Path | None) -> Path | None:
    """A local path as it is; `hf://ORG/REPO/PATH[@REV]` downloaded into huggingface_hub's cache."""
    if spec is None or not str(spec).startswith("hf://"):
        return Path(spec) if spec is not None else None
    from huggingface_hub import hf_hub_download

    rest, _, revision = str(spec)[len("hf://"):].partition("@")
    parts = rest.split("/", 2)
    if (len(parts) != 3 or not REPO_ID.fullmatch("/".join(parts[:2])) or (revision and not REVISION.fullmatch(revision))
            or not all(PLAIN_NAME.fullmatch(part) for part in parts[2].split("/"))):
        raise AckdError(f"{spec}: expected hf://ORG/REPO/PATH[@REVISION]")
    with hub_errors(f"downloading {spec}"):
        return Path(hf_hub_download("/".join(parts[:2]), parts[2], revision=revision or None))


def model_card(config: dict[str, Any], result: dict[str, Any]) -> str:
    kind = config.get("kind", "run")
    metrics = {k: result.get(k) for k in ("val_oa", "val_f1", "oa", "f1", "val_top1") if result.get(k) is not None}
    protocol = result.get("protocol", ABSENT_DEFAULTS["protocol"])  # a result older than the field: held out
    header = {"library_name": "ackd-bench", "tags": ["remote-sensing", "knowledge-distillation", "ackd-bench", kind],
              "ackd_bench": {"kind": kind, "dataset": config.get("dataset"),
                             "dataset_version": config.get("dataset_version"), "arch": config.get("arch"),
                             "profile": config.get("profile"), "protocol": protocol, "bands": config.get("bands"),
                             "config_hash": result.get("config_hash"), "metrics": metrics}}
    bands = config.get("bands") or []
    return (f"---\n{json.dumps(header, indent=1)}\n---\n\n# ackd-bench {kind}: {config.get('arch')} on "
            f"{config.get('dataset')}\n\nDataset version `{config.get('dataset_version')}`, profile "
            f"`{config.get('profile')}`, {protocol} protocol, seed {config.get('seed')}, MS bands fed: "
            f"{' '.join(map(str, bands))} (a run that uses it must feed the same: its profile's options.ms_bands). "
            "Metrics (fractions): "
            + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            + ".\n\nUse it as `--teacher hf://ORG/REPO/best.pt` (or `--matcher`); the full configuration is in "
              "`config.json`.\n")


def publish_run(run_dir: str | Path, repo: str, *, private: bool = False) -> dict[str, str]:
    from huggingface_hub import CommitOperationAdd

    run = Path(run_dir)
    checkpoint, config_file, result_file = run / "checkpoints" / "best.pt", run / "config.json", run / "result.json"
    for path in (checkpoint, config_file, result_file):
        if not path.is_file():
            raise AckdError(f"{run}: no {path.relative_to(run)}; publish a finished teacher or matcher run")
    config, result = json.loads(config_file.read_text()), json.loads(result_file.read_text())
    if config.get("kind") not in ("teacher", "matcher"):
        raise AckdError(f"{run}: a {config.get('kind')} run; only teachers and matchers are shared as checkpoints")
    repo_id, _ = parse_repo(repo)
    api = _api()
    with hub_errors(f"publishing {run} to the hub's model {repo_id}"):
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
                  for name, path in (("best.pt", checkpoint), ("config.json", config_file), ("result.json", result_file))]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=model_card(config, result).encode()))
    with hub_errors(f"publishing {run} to the hub's model {repo_id}"):
        commit = api.create_commit(repo_id, operations, repo_type="model",
                                   commit_message=f"{config['kind']} {config.get('arch')} on {config.get('dataset')}")
    return {"repo": repo_id, "revision": commit.oid, "tag": ""}

