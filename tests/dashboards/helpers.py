"""Walking a Dash layout the way a reader of the page would: components, ids, visible text."""
from __future__ import annotations

from typing import Any, Iterator

from dash.development.base_component import Component


def walk(node: Any) -> Iterator[Component]:
    if isinstance(node, Component):
        yield node
        yield from walk(getattr(node, "children", None))
    elif isinstance(node, (list, tuple)):
        for n in node:
            yield from walk(n)


def text(node: Any) -> str:
    """All text a browser would render for the subtree, whitespace collapsed as HTML does."""
    return " ".join(_text(node).split())


def _text(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, (int, float)):
        return str(node)
    if isinstance(node, (list, tuple)):
        return " ".join(_text(n) for n in node)
    if isinstance(node, Component):
        return _text(getattr(node, "children", None))
    return ""


def by_id(node: Any, ident: Any) -> Component | None:
    return next((c for c in walk(node) if getattr(c, "id", None) == ident), None)


def by_type(node: Any, typ: str) -> list[Component]:
    return [c for c in walk(node) if isinstance(getattr(c, "id", None), dict) and c.id.get("type") == typ]


def by_class(node: Any, cls: str) -> list[Component]:
    return [c for c in walk(node) if cls in (getattr(c, "className", None) or "").split()]
