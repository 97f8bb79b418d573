"""Reading YAML with the position of every key, and applying ``--set key.path=value`` overrides.

``read_yaml`` returns the plain data and a map from each key path (a tuple such as
``("model", "layers", 0, "units")``) to a human-readable place: ``"spiral.yaml:12:15"`` for keys from
the file, ``"--set model.layers.0.units=16"`` for overridden ones.  Validation errors use it to say
where a bad value came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from nnctl.errors import NnctlError

KeyPath = tuple  # str keys and int list indices, e.g. ("model", "layers", 0, "units")

#: YAML files larger than this are refused before parsing (configs are a few KB)
MAX_YAML_BYTES = 1_000_000
#: a document with more nodes than this (counting every alias expansion) is refused: "billion laughs"
MAX_YAML_NODES = 100_000


class Locations(dict):
    """Key path -> place text.  ``place(path)`` finds the nearest recorded ancestor."""

    def __init__(self, source: str):
        super().__init__()
        self.source = source

    def place(self, path: KeyPath) -> str:
        for end in range(len(path), -1, -1):
            if path[:end] in self:
                return self[path[:end]]
        return self.source


def read_yaml(path: str | os.PathLike) -> tuple[Any, Locations]:
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise NnctlError(f"{name}: file not found")
    if path.is_dir():
        raise NnctlError(f"{name}: is a folder, not a YAML file")
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise NnctlError(f"{name}: {size:,} bytes is too large for a config (the limit is {MAX_YAML_BYTES:,})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise NnctlError(f"{name}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise NnctlError(f"{name}: cannot read: {exc.strerror}") from None
    return parse_yaml(text, name)


def parse_yaml(text: str, source: str) -> tuple[Any, Locations]:
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader checks the characters here already
        node = loader.get_single_node()
        locations = Locations(source)
        if node is None:
            return None, locations
        _record_locations(node, (), locations, source, [0])
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor" in str(exc):
            problem = f"{problem} (tags that create Python objects are not allowed)"
        raise NnctlError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise NnctlError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:
        raise NnctlError(f"{source}: the document is nested too deeply; refused") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, locations


def _record_locations(node, path: KeyPath, locations: Locations, source: str, count: list[int]) -> None:
    count[0] += 1
    if count[0] > MAX_YAML_NODES:
        raise NnctlError(
            f"{source}: the document expands to more than {MAX_YAML_NODES:,} values (too many aliases?); refused"
        )
    mark = node.start_mark
    locations.setdefault(path, f"{source}:{mark.line + 1}:{mark.column + 1}")
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or key == "<<":
                continue
            if key in seen:
                line = key_node.start_mark.line + 1
                column = key_node.start_mark.column + 1
                raise NnctlError(f"{source}:{line}:{column}: key {key!r} appears twice")
            seen.add(key)
            key_mark = key_node.start_mark
            locations[path + (key,)] = f"{source}:{key_mark.line + 1}:{key_mark.column + 1}"
            _record_locations(value_node, path + (key,), locations, source, count)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_locations(item, path + (index,), locations, source, count)


def parse_key_path(text: str) -> KeyPath:
    """``"model.layers.0.units"`` -> ``("model", "layers", 0, "units")``."""
    return tuple(int(part) if part.isdigit() else part for part in text.split("."))


def apply_override(data: dict, override: str, locations: Locations) -> None:
    """Apply one ``key.path=value`` (value parsed as YAML) to ``data`` in place."""
    place = f"--set {override}"
    key_text, sep, value_text = override.partition("=")
    if not sep or not key_text.strip():
        raise NnctlError(f"{place}: expected key.path=value, e.g. --set optimizer.lr=0.1")
    path = parse_key_path(key_text.strip())
    if any(part == "" for part in path):
        raise NnctlError(f"{place}: {key_text!r} is not a key path (empty part between dots)")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError as exc:
        raise NnctlError(f"{place}: the value is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    node = data
    for depth, part in enumerate(path[:-1]):
        node = _step_into(node, part, path[: depth + 1], place)
    last = path[-1]
    if isinstance(node, list):
        _check_index(node, last, path, place)
    elif not isinstance(node, dict):
        raise NnctlError(f"{place}: {'.'.join(map(str, path[:-1]))} is a value, not a section with keys")
    node[last] = value
    for recorded in [p for p in locations if p[: len(path)] == path]:
        del locations[recorded]
    locations[path] = place


def _step_into(node, part, path: KeyPath, place: str):
    if isinstance(node, list):
        _check_index(node, part, path, place)
        return node[part]
    if not isinstance(node, dict):
        raise NnctlError(f"{place}: {'.'.join(map(str, path[:-1]))} is a value, not a section with keys")
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


def _check_index(node: list, part, path: KeyPath, place: str) -> None:
    where = ".".join(map(str, path[:-1]))
    if not isinstance(part, int):
        raise NnctlError(f"{place}: {where} is a list; use an index such as {where}.0")
    if part >= len(node):
        raise NnctlError(f"{place}: {where} has {len(node)} items (indices 0 to {len(node) - 1})")
