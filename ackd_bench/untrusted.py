"""What the tool takes from files users exchange: names, paths and YAML, each read by one rule.

A name that comes from a file a user may have been sent (a manifest's dataset or shard file, a
recipe, a sweep, a board) is a plain name: one path component of ASCII letters, digits and
`. _ + -`, starting with a letter or digit, so it can never be `..`, absolute, hidden or a
look-alike. Paths come from the user; what the tool writes under a folder is checked on the
resolved path, so a symlink inside a shared folder cannot lead outside it. YAML (profiles,
recipes, method defaults, `--set` values) is read without aliases: a few lines of nested aliases
expand to gigabytes (the "billion laughs"), and no file of this project needs one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import AckdError

PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def plain_name(value: object, what: str) -> str:
    """`value` if it is a plain name, else a one-line error naming `what` (the file and field)."""
    if not isinstance(value, str) or not PLAIN_NAME.fullmatch(value):
        raise AckdError(f"{what} {value!r}: expected a plain name (ASCII letters, digits, '.', '_', '+', '-'; "
                        "no path, at most 128 characters)")
    return value


NUMBER = (int, float)


def typed(value: Any, kinds: tuple[type, ...]) -> bool:
    """`isinstance`, except that a bool is not a number unless bool is among `kinds` (JSON and YAML
    `true` would otherwise pass as 1)."""
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def inside(path: Path, root: Path, what: str) -> Path:
    """`path` resolved, after checking that it stays under `root` (resolved too)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise AckdError(f"{what} {path}: resolves to {resolved}, outside {base}")
    return resolved


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str, where: str) -> Any:
    """YAML data (safe types only, no aliases); a one-line error naming `where` otherwise."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise AckdError(f"{where}: invalid YAML: {' '.join(str(exc).split())[:200]}") from None
