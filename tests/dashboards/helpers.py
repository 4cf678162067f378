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


def dash_call(client: Any, output: str, values: dict[str, Any], changed: list[str],
              match: dict[str, str] | None = None) -> Any:
    """What the browser posts to /_dash-update-component when `changed` ("id.prop") fire the
    callback whose output key contains `output`, read from /_dash-dependencies like the
    renderer does. values: "id.prop" -> value for its inputs and states (absent: None);
    match: the concrete values of a pattern-matching (MATCH) id. Returns the response
    (200 with {"response": {...}}, 204 when nothing changes, 401/403 when refused)."""
    import json

    deps = client.get("/_dash-dependencies").get_json()
    dep = next(d for d in deps if output in d["output"])

    def concrete(ident: str) -> Any:
        if not ident.startswith("{"):
            return ident
        pattern = json.loads(ident)
        return {k: (match or {}).get(k, v) if isinstance(v, list) else v for k, v in pattern.items()}

    def key(ident: Any, prop: str) -> str:
        text = json.dumps(ident, sort_keys=True, separators=(",", ":")) if isinstance(ident, dict) else ident
        return f"{text}.{prop}"

    def items(specs: list[dict]) -> list[dict]:
        out = []
        for s in specs:
            ident = concrete(s["id"])
            out.append({"id": ident, "property": s["property"], "value": values.get(key(ident, s["property"]))})
        return out

    outs = []
    for part in dep["output"].strip(".").split("..."):
        ident, prop = part.rsplit(".", 1)
        outs.append({"id": concrete(ident), "property": prop})
    body = {"output": dep["output"], "outputs": outs if dep["output"].startswith("..") else outs[0],
            "inputs": items(dep["inputs"]), "state": items(dep["state"]), "changedPropIds": changed}
    return client.post("/_dash-update-component", json=body)
