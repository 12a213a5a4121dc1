"""Reading one configuration file: YAML (libyaml's CSafeLoader when present) or JSON.

Aliases, anchors and merge keys are refused (alias bombs), and so are duplicate keys, which YAML
and JSON would otherwise silently resolve to the last one. The line of a key path is found only on
the error path, by composing the offending file once more.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

import yaml

from srvd.config.model import KeyPath, Problem

if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present


class _Refused(yaml.MarkedYAMLError):
    pass


class _Loader(_BaseLoader):
    """CSafeLoader that refuses aliases, merge keys and duplicate mapping keys."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node in self.constructed_objects:
            raise _Refused(None, None, "YAML aliases and anchors are not allowed", node.start_mark)
        return super().construct_object(node, deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise _Refused(None, None, "expected a mapping", node.start_mark)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(
                    None, None, "YAML merge keys (<<) are not allowed", key_node.start_mark
                )
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise _Refused(None, None, "a mapping key must be a scalar", key_node.start_mark)
            if key in mapping:
                first = next(k for k, _ in node.value if k.value == key_node.value)
                raise _Refused(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (first on line "
                    f"{first.start_mark.line + 1})",
                    key_node.start_mark,
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _parse_file(path: str, data: bytes) -> Any:
    """The data of one config file (YAML, or JSON when it ends in .json)."""
    if path.endswith(".json"):
        try:
            return json.loads(data, object_pairs_hook=_unique_object)
        except _DuplicateKey as exc:
            line = _json_key_line(data, exc.key)
            raise _FileProblem(
                Problem(path, (), f"key {exc.key!r} appears twice in one object", line)
            ) from None
        except json.JSONDecodeError as exc:
            raise _FileProblem(
                Problem(path, (), f"JSON syntax error: {exc.msg}", exc.lineno)
            ) from None
        except UnicodeDecodeError as exc:
            raise _FileProblem(Problem(path, (), f"not UTF-8: {exc}")) from None
    loader = _Loader(data)
    try:
        if b"&" in data:
            _refuse_anchors(data)
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        text = exc.problem or exc.context or "YAML error"
        raise _FileProblem(Problem(path, (), f"YAML: {text}", line)) from None
    except yaml.YAMLError as exc:
        raise _FileProblem(Problem(path, (), f"YAML: {exc}")) from None
    finally:
        loader.dispose()


def _refuse_anchors(data: bytes) -> None:
    """Anchors are refused even without an alias (libyaml's composer keeps no trace of them, so
    the events are read; only for files that contain an "&" at all)."""
    for event in yaml.parse(data, Loader=_BaseLoader):
        if getattr(event, "anchor", None) is not None:
            mark = cast(yaml.Mark, event.start_mark)
            raise _Refused(None, None, "YAML aliases and anchors are not allowed", mark)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _json_key_line(data: bytes, key: str) -> int | None:
    """The line of a key's second appearance in a JSON text (error path only)."""
    needle = json.dumps(key).encode()
    first = data.find(needle)
    second = data.find(needle, first + 1) if first >= 0 else -1
    return data.count(b"\n", 0, second) + 1 if second >= 0 else None


class _FileProblem(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _locate(path: str, keys: KeyPath) -> int | None:
    """The line of a key path in a YAML (or JSON) file (error path only: composes it again)."""
    if not keys:
        return 1
    try:
        with open(path, "rb") as handle:
            node = yaml.compose(handle, Loader=_BaseLoader)
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if _same_key(key_node, key):
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _same_key(node: yaml.Node, key: str | int) -> bool:
    if not isinstance(node, yaml.ScalarNode):
        return False
    try:
        value = yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except yaml.YAMLError:
        value = node.value
    return bool(value == key and type(value) is type(key)) or node.value == key
