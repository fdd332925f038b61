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

import json

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


JSON_MAX_DEPTH = 64  # far deeper than any file this tool writes (a request is 4 levels deep)
JSON_MAX_DIGITS = 40  # the longest integer a record holds is a seed below 2**64 (20 digits)


def load_json(text: str, where: str) -> Any:
    """JSON from a file users exchange, or one line naming `where`: no repeated key (the last would win
    silently), no nesting deeper than JSON_MAX_DEPTH, no integer longer than JSON_MAX_DIGITS digits,
    no lone surrogate (it passes parsing and fails at the next write), no NaN or Infinity."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(f"key {repeated[0][:40]!r} appears more than once")
        return dict(items)

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > JSON_MAX_DIGITS:
            raise ValueError(f"an integer of {len(digits)} digits")
        return int(digits)

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        _check_depth(text)
        data = json.loads(text, object_pairs_hook=pairs, parse_int=integer, parse_constant=constant)
    except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError
        raise AckdError(f"{where}: not valid JSON for this file ({' '.join(str(exc).split())[:160]})") from None
    _check_strings(data, where)
    return data


def _check_depth(text: str) -> None:
    """Refuse nesting beyond JSON_MAX_DEPTH before parsing (json's parser recurses per level)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            escaped, in_string = (not escaped and char == "\\"), in_string and (escaped or char != '"')
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > JSON_MAX_DEPTH:
                raise ValueError(f"nested deeper than {JSON_MAX_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def _check_strings(data: Any, where: str) -> None:
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and any("\ud800" <= ch <= "\udfff" for ch in value):
            raise AckdError(f"{where}: a string holds a lone surrogate (not text): {value[:40]!r}")


def load_yaml(text: str, where: str) -> Any:
    """YAML data (safe types only, no aliases, nesting within JSON_MAX_DEPTH); a one-line error naming
    `where` otherwise."""
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise AckdError(f"{where}: invalid YAML: {' '.join(str(exc).split())[:200]}") from None
    except RecursionError:  # PyYAML's composer recurses per level
        raise AckdError(f"{where}: nested deeper than {JSON_MAX_DEPTH} levels") from None
    check_nesting(data, where)
    return data


def check_nesting(data: Any, where: str, limit: int = JSON_MAX_DEPTH) -> None:
    """Refuse containers (dicts, lists, tuples) nested deeper than `limit`: whatever reads the data next
    (a hash of it, a comparison, a copy) recurses per level. Walked without recursion."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list, tuple)):
            if depth > limit:
                raise AckdError(f"{where}: nested deeper than {limit} levels")
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))


CSV_MAX_ROWS = 1_000_000  # a board of every run of the grid, many times over


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """A CSV file users exchange (a board, a results table): its header and its rows, each with its line
    number; one line naming the file and line otherwise: text that is not UTF-8, a cell over the csv
    module's field limit (131,072 characters), a NUL byte, more than CSV_MAX_ROWS rows."""
    import csv

    rows, line = [], 1
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            for row in reader:
                line = reader.line_num
                if len(rows) >= CSV_MAX_ROWS:
                    raise AckdError(f"{path}: more than {CSV_MAX_ROWS:,} rows")
                rows.append((line, row))
    except UnicodeDecodeError as exc:
        raise AckdError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except csv.Error as exc:
        raise AckdError(f"{path}:{line + 1}: not a readable CSV row ({exc})") from None
    return header, rows
