"""Reading YAML with the position of every key, and applying ``--set key.path=value`` overrides.

``read_yaml`` returns the plain data and a map from each key path (a tuple such as
``("model", "layers", 0, "units")``) to a human-readable place: ``"spiral.yaml:12:15"`` for keys from
the file, ``"--set model.layers.0.units=16"`` for overridden ones.  Validation errors use it to say
where a bad value came from.
"""

from __future__ import annotations

import copy
import functools
import io
import os
import re
import stat
from typing import Any

import yaml

from nnctl.errors import NnctlError

KeyPath = tuple  # str keys and int list indices, e.g. ("model", "layers", 0, "units")

#: YAML files larger than this are refused before parsing (configs are a few KB)
MAX_YAML_BYTES = 1_000_000
#: a document with more nodes than this (counting every alias expansion) is refused: "billion laughs"
MAX_YAML_NODES = 100_000
#: mappings and lists nested deeper than this are refused (a config is a few levels deep)
MAX_YAML_DEPTH = 64


def open_regular_file(path: str | os.PathLike, what: str = "file") -> io.BufferedReader:
    """``path`` opened for reading in binary mode, if it is a regular file.  A folder, a device such as
    /dev/zero, a FIFO or a pipe (/dev/stdin) is refused before a byte is read: reading one could block or
    never end.  The file is opened non-blocking first, so that a FIFO swapped in after a check cannot hang."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise NnctlError(f"{name}: file not found") from None
    except OSError as exc:
        raise NnctlError(f"{name}: cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise NnctlError(f"{name}: is a folder; expected a {what}")
        if not stat.S_ISREG(mode):
            kind = "a pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
            raise NnctlError(f"{name}: is {kind}, not a regular file; expected a {what} saved on disk")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
    name = str(path)
    with open_regular_file(path, "YAML file") as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            raw = handle.read(MAX_YAML_BYTES + 1) if size <= MAX_YAML_BYTES else b""  # never more than the limit
        except OSError as exc:
            raise NnctlError(f"{name}: cannot read: {exc.strerror}") from None
    if size > MAX_YAML_BYTES or len(raw) > MAX_YAML_BYTES:
        raise NnctlError(f"{name}: {max(size, len(raw)):,} bytes is too large for a config (the limit is {MAX_YAML_BYTES:,})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NnctlError(f"{name}: not a UTF-8 text file ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    data, locations = _parse_once(text, name)
    return copy.deepcopy(data), copy.deepcopy(locations)


@functools.lru_cache(maxsize=16)
def _parse_once(text: str, source: str) -> tuple[Any, Locations]:
    """``parse_yaml``, remembered: a sweep reads its base config once per trial (PyYAML's pure-Python parser
    takes milliseconds a file); callers get copies, since overrides change them."""
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str, inline: bool = False) -> tuple[Any, Locations]:
    """The data of one YAML document, within the limits on size, nodes (alias expansions) and depth.
    ``inline``: ``text`` is a value given on the command line (``--set``), and ``source`` names it."""
    loader = None
    what = "the value" if inline else "the document"
    if len(text) > MAX_YAML_BYTES:
        raise NnctlError(f"{source}: {what} has {len(text):,} characters; the limit is {MAX_YAML_BYTES:,}")
    if _bracket_depth(text) > MAX_YAML_DEPTH:
        # before PyYAML: its scanner takes seconds on thousands of nested [ (quadratic in the flow depth)
        raise NnctlError(f"{source}: {what} is nested more than {MAX_YAML_DEPTH} levels deep ([ and {{); refused")
    try:
        loader = yaml.SafeLoader(text)  # the reader checks the characters here already
        node = loader.get_single_node()
        locations = Locations(source)
        if node is None:
            return None, locations
        _record_locations(node, (), locations, source, [0], what)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark and not inline else source
        problem = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor" in str(exc):
            problem = f"{problem} (tags that create Python objects are not allowed)"
        if "expected a single document" in str(exc):
            problem = f"{what} holds several YAML documents (separated by ---); give one"
        label = "the value is not valid YAML" if inline else "invalid YAML"
        raise NnctlError(f"{where}: {label}: {problem}") from None
    except yaml.YAMLError as exc:
        raise NnctlError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:
        raise NnctlError(f"{source}: {what} is nested too deeply (more than {MAX_YAML_DEPTH} levels); refused") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, locations


def _bracket_depth(text: str) -> int:
    """The deepest nesting of [ ] and { } in ``text``, quotes ignored (brackets in strings count too, which
    only matters past MAX_YAML_DEPTH of them)."""
    depth = deepest = 0
    for char in re.sub(r"[^\[\]{}]+", "", text):
        depth = depth + 1 if char in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def _record_locations(node, path: KeyPath, locations: Locations, source: str, count: list[int], what: str, depth: int = 0) -> None:
    _count_one(node, source, count, what, depth)
    mark = node.start_mark
    locations.setdefault(path, f"{source}:{mark.line + 1}:{mark.column + 1}")
    if isinstance(node, yaml.MappingNode):
        seen = set()
        merges = []
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                if merges:
                    raise NnctlError(f"{_at(key_node, source, what)}: key '<<' appears twice; merge several mappings with one <<: [*a, *b]")
                merges.append(value_node)
                continue
            if key is None:
                _count_nodes(key_node, source, count, what, depth + 1)
                _count_nodes(value_node, source, count, what, depth + 1)
                continue
            if key in seen:
                raise NnctlError(f"{_at(key_node, source, what)}: key {key!r} appears twice")
            seen.add(key)
            key_mark = key_node.start_mark
            locations[path + (key,)] = f"{source}:{key_mark.line + 1}:{key_mark.column + 1}"
            _record_locations(value_node, path + (key,), locations, source, count, what, depth + 1)
        for value_node in merges:  # merged keys count too, but the keys written out keep their places
            _count_nodes(value_node, source, count, what, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_locations(item, path + (index,), locations, source, count, what, depth + 1)


def _count_one(node, source: str, count: list[int], what: str, depth: int) -> None:
    """Count ``node`` against the limits: at most MAX_YAML_NODES values (aliases expanded), MAX_YAML_DEPTH levels."""
    count[0] += 1
    if count[0] > MAX_YAML_NODES:
        raise NnctlError(f"{source}: {what} expands to more than {MAX_YAML_NODES:,} values (too many aliases?); refused")
    if depth > MAX_YAML_DEPTH:
        raise NnctlError(f"{_at(node, source, what)}: {what} is nested more than {MAX_YAML_DEPTH} levels deep; refused")


def _at(node, source: str, what: str) -> str:
    """``file:line:column`` of a node; a command-line value is named by itself (it is one line)."""
    if what == "the value":
        return source
    return f"{source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _count_nodes(node, source: str, count: list[int], what: str, depth: int) -> None:
    """The limits of ``_record_locations`` for parts that have no key path: merged mappings, complex keys."""
    _count_one(node, source, count, what, depth)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _count_nodes(key_node, source, count, what, depth + 1)
            _count_nodes(value_node, source, count, what, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _count_nodes(item, source, count, what, depth + 1)


def command_line_place(option: str, text: str, limit: int = 120) -> str:
    """How an error names a command-line value: on one line, and shortened when long."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return f"{option} {text if len(text) <= limit else text[: limit - 3] + '...'}"


def parse_key_path(text: str) -> KeyPath:
    """``"model.layers.0.units"`` -> ``("model", "layers", 0, "units")``."""
    return tuple(int(part) if part.isdigit() else part for part in text.split("."))


def apply_override(data: dict, override: str, locations: Locations) -> None:
    """Apply one ``key.path=value`` (value parsed as YAML) to ``data`` in place."""
    place = command_line_place("--set", override)
    key_text, sep, value_text = override.partition("=")
    if not sep or not key_text.strip():
        raise NnctlError(f"{place}: expected key.path=value, e.g. --set optimizer.lr=0.1")
    path = parse_key_path(key_text.strip())
    if any(part == "" for part in path):
        raise NnctlError(f"{place}: {key_text!r} is not a key path (empty part between dots)")
    if len(path) > MAX_YAML_DEPTH:
        raise NnctlError(f"{place}: the key path has {len(path)} parts; the limit is {MAX_YAML_DEPTH}")
    # the same limits as a file: size, alias expansions, depth, duplicate keys, no Python tags
    value = parse_yaml(value_text, place, inline=True)[0] if value_text.strip() else None
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
