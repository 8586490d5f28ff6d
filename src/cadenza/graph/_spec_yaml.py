"""YAML to plain data with positions, within the bounds of :mod:`cadenza.graph.spec_read`.

libyaml parses (it keeps its own stacks, so deep input cannot exhaust Python's), and this
module composes its events into nodes itself instead of letting PyYAML do it: that is where
nesting depth, the values an alias stands for, recursive aliases and long integers can be
counted and refused *before* anything is built from them. PyYAML's safe constructor then
builds the data from nodes already known to be small and acyclic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

from cadenza.graph.spec_read import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_NODES,
    Loc,
    Marks,
    Problem,
    SpecError,
    check_yaml_characters,
    shorten,
    too_deep,
    too_long,
    too_many,
)

# libyaml's parser when PyYAML was built with it (the wheels are): ~10x faster, same marks.
_Parser: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT = "tag:yaml.org,2002:int"


def parse_yaml(text: str, file: str) -> tuple[Any, Marks]:
    """The one document in ``text`` as data, and where each part of it starts."""
    check_yaml_characters(text, file)
    parser = _Parser(text)
    try:
        composer = _Composer(parser, file)
        root = composer.compose()
        if composer.duplicates:
            raise SpecError(file, composer.duplicates)
        data = _Constructor().construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message = f"invalid YAML: {exc.problem or exc.context}"
        raise SpecError(file, [Problem((), message, line, col)]) from None
    except yaml.YAMLError as exc:  # a ReaderError: bytes libyaml refuses that we did not
        raise SpecError(file, [Problem((), f"invalid YAML: {exc}")]) from None
    finally:
        parser.dispose()
    return data, composer.marks


@dataclass(slots=True)
class _Anchor:
    node: yaml.Node
    size: int = 1  # values in the subtree, aliases expanded
    height: int = 0  # levels of lists and mappings in it
    open: bool = False  # still being read: an alias to it would make a cycle


@dataclass(slots=True)
class _Frame:
    """A list or mapping being read."""

    node: yaml.Node
    path: Loc
    anchor: _Anchor | None
    size: int = 1
    height: int = 1
    index: int = 0  # the next item's index (lists)
    key: Any = None  # the current key (mappings), once read
    key_node: Any = None
    has_key: bool = False
    seen: set[Any] = field(default_factory=set)

    def child_path(self) -> Loc | None:
        """Where the next value goes; ``None`` for a key (``_add`` records where keys are)."""
        if isinstance(self.node, yaml.SequenceNode):
            return (*self.path, self.index)
        return (*self.path, self.key) if self.has_key else None


class _Composer:
    """PyYAML's composer, iterative and counting: builds the node graph from parser events,
    records each part's position and duplicate keys, and stops at the first bound passed."""

    def __init__(self, parser: Any, file: str) -> None:
        self.parser = parser
        self.file = file
        self.resolver = Resolver()
        self.marks: Marks = {}
        self.duplicates: list[Problem] = []
        self.anchors: dict[str, _Anchor] = {}
        self.total = 0

    def compose(self) -> yaml.Node | None:
        parser = self.parser
        parser.get_event()  # stream start
        if parser.check_event(yaml.StreamEndEvent):
            return None
        parser.get_event()  # document start
        root = self._document()
        parser.get_event()  # document end
        if not parser.check_event(yaml.StreamEndEvent):
            another = parser.get_event()
            raise self._error(
                another, "a workflow file holds one YAML document; another starts here"
            )
        return root

    def _document(self) -> yaml.Node:
        """The document's root node, from its events (one loop, an explicit stack)."""
        stack: list[_Frame] = []
        while True:
            event = self.parser.get_event()
            if isinstance(event, yaml.CollectionEndEvent):
                frame = stack.pop()
                frame.node.end_mark = event.end_mark
                if frame.anchor is not None:
                    frame.anchor.size, frame.anchor.height = frame.size, frame.height
                    frame.anchor.open = False
                node, size, height = frame.node, frame.size, frame.height
            else:
                path = stack[-1].child_path() if stack else ()
                if path is not None:
                    self.marks.setdefault(path, _at(event.start_mark))
                if isinstance(event, yaml.AliasEvent):
                    node, size, height = self._alias(event, len(stack))
                elif isinstance(event, yaml.ScalarEvent):
                    self._count(1, event)
                    node, size, height = self._scalar(event), 1, 0
                    if event.anchor is not None:
                        self.anchors[event.anchor] = _Anchor(node)
                else:  # a list or mapping starts
                    self._count(1, event)
                    if path is None:
                        raise self._error(event, "a key is a plain value, not a list or mapping")
                    if len(stack) >= MAX_DEPTH:
                        raise too_deep(self.file, *_at(event.start_mark))
                    stack.append(self._start(event, path))
                    if stack[-1].anchor is not None:
                        self.anchors[event.anchor] = stack[-1].anchor
                    continue
            if not stack:
                return node
            self._add(stack[-1], node, size, height, event)

    def _start(self, event: Any, path: Loc) -> _Frame:
        if isinstance(event, yaml.SequenceStartEvent):
            tag = _tag(event) or self.resolver.resolve(yaml.SequenceNode, None, event.implicit)
            node: yaml.Node = yaml.SequenceNode(
                tag, [], event.start_mark, None, flow_style=event.flow_style
            )
        else:
            tag = _tag(event) or self.resolver.resolve(yaml.MappingNode, None, event.implicit)
            node = yaml.MappingNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
        anchor = _Anchor(node, open=True) if event.anchor is not None else None
        return _Frame(node, path, anchor)

    def _scalar(self, event: Any) -> yaml.ScalarNode:
        tag = _tag(event) or self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _INT:
            digits = len(event.value.replace("_", "").lstrip("+-"))
            if digits > MAX_INT_DIGITS:
                raise too_long(self.file, digits, *_at(event.start_mark))
        return yaml.ScalarNode(
            tag, event.value, event.start_mark, event.end_mark, style=event.style
        )

    def _alias(self, event: Any, depth: int) -> tuple[yaml.Node, int, int]:
        """The node an alias stands for, counted as all the values in it."""
        anchor = self.anchors.get(event.anchor)
        name = event.anchor if len(event.anchor) <= 40 else event.anchor[:40] + "..."
        if anchor is None:
            raise self._error(event, f"alias *{name} names no anchor &{name} before it")
        if anchor.open:
            raise self._error(
                event,
                f"alias *{name} is inside the list or mapping &{name} it stands for: a "
                "recursive document has no end",
            )
        if depth + anchor.height > MAX_DEPTH:
            raise too_deep(self.file, *_at(event.start_mark))
        self._count(anchor.size, event)
        return anchor.node, anchor.size, anchor.height

    def _add(self, frame: _Frame, node: yaml.Node, size: int, height: int, event: Any) -> None:
        """Put a finished node in the list or mapping being read (as a key or a value)."""
        frame.size += size
        frame.height = max(frame.height, height + 1)
        if isinstance(frame.node, yaml.SequenceNode):
            frame.node.value.append(node)
            frame.index += 1
            return
        if frame.has_key:
            frame.node.value.append((frame.key_node, node))
            frame.has_key = False
            return
        if not isinstance(node, yaml.ScalarNode):  # an alias of a list or mapping
            raise self._error(event, "a key is a plain value, not a list or mapping")
        key = node.value
        at = _at(node.start_mark)
        if key in frame.seen:
            self.duplicates.append(
                Problem((*frame.path, key), f"duplicate key {shorten(key)}", *at)
            )
        frame.seen.add(key)
        frame.key, frame.key_node, frame.has_key = key, node, True
        self.marks[(*frame.path, key)] = at  # a problem with a field points at its key

    def _count(self, values: int, event: Any) -> None:
        self.total += values
        if self.total > MAX_NODES:
            raise too_many(self.file, *_at(event.start_mark))

    def _error(self, event: Any, message: str) -> SpecError:
        return SpecError(self.file, [Problem((), message, *_at(event.start_mark))])


class _Constructor(SafeConstructor):
    """PyYAML's safe constructor, with a value it cannot read (``!!int abc``, the timestamp
    ``2024-13-45``) reported where it is instead of as a bare ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            value = node.value if isinstance(node.value, str) else type(node.value).__name__
            kind = node.tag.rsplit(":", 1)[-1]
            why = str(exc) if len(str(exc)) <= 80 else str(exc)[:80] + "..."
            raise ConstructorError(
                None, None, f"cannot read {shorten(value)} as {kind} ({why})", node.start_mark
            ) from None


def _tag(event: Any) -> str | None:
    tag = event.tag
    return None if tag is None or tag == "!" else tag


def _at(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1
