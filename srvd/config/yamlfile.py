"""Reading one configuration file: YAML (libyaml's CSafeLoader when present) or JSON.

Aliases, anchors and merge keys are refused (alias bombs), and so are duplicate keys, which YAML
and JSON would otherwise silently resolve to the last one. The line of a key path is found only on
the error path, by composing the offending file once more.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Hashable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

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


# ---------------------------------------------------------------------------------------------
# Reading a file as it is parsed (events), for the long ``domains:`` mappings


class Unusual(Exception):
    """Something the event reader leaves to the full reader: an anchor or alias, a complex or
    repeated key, a tag, more than one document, a top level that is not a mapping. The full
    reader then says what is wrong, with its line (or reads what is merely unusual)."""


_MAP_TAG = "tag:yaml.org,2002:map"
# The first characters with which a plain scalar may resolve to something else than a string
# (null, bool, int, float, timestamp, merge, value): any other plain scalar is a string.
_RESOLVERS: dict[Any, Any] = _BaseLoader.yaml_implicit_resolvers
_NOT_TEXT = frozenset(_RESOLVERS) if None not in _RESOLVERS else None
# PyYAML's stubs leave these untyped
_ScalarNode = cast(Callable[..., yaml.ScalarNode], yaml.ScalarNode)
_SequenceNode = cast(Callable[..., yaml.SequenceNode], yaml.SequenceNode)
_MappingNode = cast(Callable[..., yaml.MappingNode], yaml.MappingNode)
Events = Callable[[], Any]


def _events(loader: _Loader) -> Events:
    events: Events = loader.get_event
    return events


def _resolve(loader: _Loader, kind: type[yaml.Node], value: str | None, implicit: Any) -> str:
    return cast(Callable[[type[yaml.Node], str | None, Any], str], loader.resolve)(
        kind, value, implicit
    )


class StreamedMapping:
    """The items of a mapping, parsed as they are taken (once)."""

    def __init__(self, items: Iterator[tuple[Any, Any]]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return self.items


class Readable(Protocol):
    """What libyaml reads a stream from."""

    def read(self, size: int = -1, /) -> bytes: ...


def stream_mapping(data: bytes | Readable, streamed: Collection[str]) -> Iterator[tuple[Any, Any]]:
    """The top-level mapping of a YAML file (its bytes, or the file, read as it is parsed), item
    by item, as libyaml parses it.

    The value of a key in ``streamed`` that is a plain block or flow mapping comes as a
    StreamedMapping, whose items are parsed as they are taken (a million-entry ``domains:``
    never exists as a whole: neither as nodes nor as a dict); every other value is composed and
    constructed as the full reader does (same tags, same refusals). Raises Unusual, or
    yaml.YAMLError for a syntax error, as soon as it is met; an empty file has no items.
    """
    loader = _Loader(data)
    try:
        get = _events(loader)
        if type(get()) is not yaml.StreamStartEvent:  # pragma: no cover - always first
            raise Unusual
        event = get()
        if type(event) is yaml.StreamEndEvent:
            return
        if type(event) is not yaml.DocumentStartEvent:  # pragma: no cover - libyaml's order
            raise Unusual
        event = get()
        if type(event) is yaml.ScalarEvent and _scalar(loader, event) is None:  # "---" alone
            if type(get()) is not yaml.DocumentEndEvent or type(get()) is not yaml.StreamEndEvent:
                raise Unusual
            return
        if (
            type(event) is not yaml.MappingStartEvent
            or event.anchor is not None
            or event.tag not in (None, "!", _MAP_TAG)
        ):
            raise Unusual
        seen: set[Any] = set()
        while type(event := get()) is not yaml.MappingEndEvent:
            if type(event) is not yaml.ScalarEvent:
                raise Unusual
            key = _scalar(loader, event)
            if key in seen:
                raise Unusual
            seen.add(key)
            event = get()
            if (
                key in streamed
                and type(event) is yaml.MappingStartEvent
                and event.anchor is None
                and event.tag is None
            ):
                items = _items(loader)
                yield key, StreamedMapping(items)
                for _ in items:  # whatever the taker left
                    pass
            else:
                yield key, _value(loader, event)
        if type(get()) is not yaml.DocumentEndEvent or type(get()) is not yaml.StreamEndEvent:
            raise Unusual
    finally:
        loader.dispose()


def _items(loader: _Loader) -> Iterator[tuple[Any, Any]]:
    """The items of the mapping whose start event was just read."""
    get = _events(loader)
    scalar, mapping_end = yaml.ScalarEvent, yaml.MappingEndEvent
    text = _NOT_TEXT or frozenset()
    while True:
        event = get()
        kind = type(event)
        if kind is mapping_end:
            return
        if kind is not scalar:
            raise Unusual
        # _scalar's common case inline (plain, untagged, not something else than text)
        key = event.value
        if (
            event.anchor is not None
            or event.tag is not None
            or not key
            or key[0] in text
            or not event.implicit[0]
            or _NOT_TEXT is None
        ):
            key = _scalar(loader, event)
        event = get()
        if type(event) is not scalar:
            yield key, _value(loader, event)
            continue
        value = event.value
        if (
            event.anchor is not None
            or event.tag is not None
            or not value
            or value[0] in text
            or not event.implicit[0]
            or _NOT_TEXT is None
        ):
            value = _scalar(loader, event)
        yield key, value


def _value(loader: _Loader, event: Any) -> Any:
    """The value of the node that begins with ``event``, as the full reader makes it: plain
    mappings and sequences are made here, anything tagged is composed and constructed."""
    kind = type(event)
    if kind is yaml.ScalarEvent:
        return _scalar(loader, event)
    if kind is not yaml.AliasEvent and event.anchor is None and event.tag is None:
        get = _events(loader)
        if kind is yaml.MappingStartEvent:
            mapping: dict[Any, Any] = {}
            while type(inner := get()) is not yaml.MappingEndEvent:
                if type(inner) is not yaml.ScalarEvent:
                    raise Unusual
                key = _scalar(loader, inner)
                if key in mapping:
                    raise Unusual
                mapping[key] = _value(loader, get())
            return mapping
        if kind is yaml.SequenceStartEvent:
            sequence = []
            while type(inner := get()) is not yaml.SequenceEndEvent:
                sequence.append(_value(loader, inner))
            return sequence
    return _construct(loader, _compose(loader, event))


def _scalar(loader: _Loader, event: Any) -> Any:
    """A scalar's value, as the full reader makes it."""
    if event.anchor is not None:
        raise Unusual
    value: str = event.value
    if event.tag is None:
        if not event.implicit[0]:  # quoted: a string
            return value
        if _NOT_TEXT is not None and value and value[0] not in _NOT_TEXT:
            return value
        if _DECIMAL and value.isascii() and value.isdigit() and (value[0] != "0" or value == "0"):
            return int(value)  # what the int resolver and constructor make of it
    return _construct(loader, _compose(loader, event))


def _resolves_decimal() -> bool:
    """Whether plain decimal digits (no leading zero) resolve to int, as in YAML 1.1."""
    loader = _Loader("")
    try:
        return _resolve(loader, yaml.ScalarNode, "993", (True, False)) == "tag:yaml.org,2002:int"
    finally:
        loader.dispose()


_DECIMAL = _resolves_decimal()


def _compose(loader: _Loader, event: Any) -> yaml.Node:
    """The node that begins with ``event`` (the rest of its events are read), as libyaml's
    composer makes it; anchors and aliases are Unusual."""
    kind = type(event)
    if kind is yaml.AliasEvent or event.anchor is not None:
        raise Unusual
    tag = event.tag
    if kind is yaml.ScalarEvent:
        if tag is None or tag == "!":
            tag = _resolve(loader, yaml.ScalarNode, event.value, event.implicit)
        return _ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    get = _events(loader)
    if kind is yaml.SequenceStartEvent:
        if tag is None or tag == "!":
            tag = _resolve(loader, yaml.SequenceNode, None, event.implicit)
        sequence = _SequenceNode(tag, [], event.start_mark, None, event.flow_style)
        while type(inner := get()) is not yaml.SequenceEndEvent:
            sequence.value.append(_compose(loader, inner))
        sequence.end_mark = inner.end_mark
        return sequence
    if kind is yaml.MappingStartEvent:
        if tag is None or tag == "!":
            tag = _resolve(loader, yaml.MappingNode, None, event.implicit)
        mapping = _MappingNode(tag, [], event.start_mark, None, event.flow_style)
        while type(inner := get()) is not yaml.MappingEndEvent:
            key = _compose(loader, inner)
            mapping.value.append((key, _compose(loader, get())))
        mapping.end_mark = inner.end_mark
        return mapping
    raise Unusual  # pragma: no cover - no other event starts a node


def _construct(loader: _Loader, node: yaml.Node) -> Any:
    """The value of a node, constructed with the full reader's refusals."""
    return cast(Callable[[yaml.Node], Any], loader.construct_document)(node)


# ---------------------------------------------------------------------------------------------
# Reading a JSON file as it is parsed, likewise

_JSON_SPACE = re.compile(r"[ \t\n\r]*")


# the json module's string scanner (C), not in its stubs
_scanstring = cast(Callable[[str, int], tuple[str, int]], vars(json.decoder)["scanstring"])


def _skip(text: str, pos: int = 0) -> int:
    """The position of the first character at or after ``pos`` that is not JSON whitespace."""
    match = _JSON_SPACE.match(text, pos)
    assert match is not None  # "*": it always matches
    return match.end()


def stream_json(data: bytes, streamed: Collection[str]) -> Iterator[tuple[Any, Any]]:
    """The top-level object of a JSON file, member by member, as stream_mapping reads YAML: the
    value of a key in ``streamed`` that is an object comes as a StreamedMapping. Values are
    decoded by the json module's scanner, as json.loads with duplicate keys refused decodes
    them; anything else (a syntax error, a top level that is not an object, a repeated key) is
    Unusual, for the full reader to report."""
    try:
        text = data.decode(json.detect_encoding(data), "surrogatepass")
    except UnicodeDecodeError:
        raise Unusual from None
    del data
    decoder = json.JSONDecoder(object_pairs_hook=_unique_object)
    try:
        pos = _skip(text)
        if text[pos] != "{":
            raise Unusual
        pos = _skip(text, pos + 1)
        seen: set[str] = set()
        if text[pos] == "}":
            pos += 1
        else:
            while True:
                key, pos = _json_key(text, pos)
                if key in seen:
                    raise Unusual
                seen.add(key)
                if key in streamed and text[pos] == "{":
                    where = [pos + 1]
                    items = _json_items(text, decoder, where)
                    yield key, StreamedMapping(items)
                    for _ in items:  # whatever the taker left
                        pass
                    pos = where[0]
                else:
                    value, pos = _json_value(decoder, text, pos)
                    yield key, value
                pos = _skip(text, pos)
                if text[pos] == ",":
                    pos = _skip(text, pos + 1)
                    continue
                if text[pos] != "}":
                    raise Unusual
                pos += 1
                break
        if _skip(text, pos) != len(text):
            raise Unusual  # something after the object
    except (IndexError, ValueError):
        raise Unusual from None


def _json_items(
    text: str, decoder: json.JSONDecoder, where: list[int]
) -> Iterator[tuple[str, Any]]:
    """The members of the object whose "{" is just before ``where[0]``; ``where[0]`` is then
    the position after its "}"."""
    try:
        pos = _skip(text, where[0])
        if text[pos] == "}":
            where[0] = pos + 1
            return
        while True:
            key, pos = _json_key(text, pos)
            value, pos = _json_value(decoder, text, pos)
            yield key, value
            pos = _skip(text, pos)
            if text[pos] == ",":
                pos = _skip(text, pos + 1)
                continue
            if text[pos] != "}":
                raise Unusual
            where[0] = pos + 1
            return
    except (IndexError, ValueError):
        raise Unusual from None


def _json_key(text: str, pos: int) -> tuple[str, int]:
    """A member's key at ``pos``, and the position of its value."""
    if text[pos] != '"':
        raise Unusual
    key, pos = _scanstring(text, pos + 1)
    pos = _skip(text, pos)
    if text[pos] != ":":
        raise Unusual
    return key, _skip(text, pos + 1)


def _json_value(decoder: json.JSONDecoder, text: str, pos: int) -> tuple[Any, int]:
    try:
        return cast(tuple[Any, int], decoder.scan_once(text, pos))  # type: ignore[attr-defined]
    except StopIteration:  # no value there
        raise Unusual from None
