"""A wall display without a browser: the requests a kiosk page's Dash renderer makes.

`Kiosk(post, get)` loads a page the way the renderer does (the pages callback for the URL:
POST /_dash-update-component with _pages_location.pathname/search), finds in the returned
layout every component with an id, and on each `tick()` posts, like the renderer on each
`refresh` interval, every callback that has `refresh.n_intervals` as an input and whose
outputs are on the page, with the ids and values of the layout (pattern-matching ALL
inputs, states and outputs expanded to the page's components). The answers are not applied
to the layout (the values the callbacks read, like page-ctx, do not change on refresh).

post(path, json_body) -> (status, json or None); get(path) -> json. Works over requests
(bench/ui_queries) and over Flask's test client (tests).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterator, Optional

PAGES_OUTPUT = ".._pages_content.children..._pages_store.data.."
REFRESH = "refresh.n_intervals"


def _components(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        if "props" in node and "type" in node:
            yield node
            yield from _components(node["props"].get("children"))
        else:
            for v in node.values():
                yield from _components(v)
    elif isinstance(node, list):
        for n in node:
            yield from _components(n)


def _parse(ident: str) -> Any:
    return json.loads(ident) if ident.startswith("{") else ident


def _matches(pattern: dict, ident: Any) -> bool:
    if not isinstance(ident, dict) or set(ident) != set(pattern):
        return False
    return all(isinstance(v, list) or ident[k] == v for k, v in pattern.items())


class Kiosk:
    def __init__(self, post: Callable[[str, dict], tuple[int, Optional[dict]]],
                 get: Callable[[str], Any], path: str = "/", search: str = "?kiosk=1") -> None:
        self._post = post
        self.deps = get("/_dash-dependencies")
        self.n = 0
        self.errors = 0
        status, answer = post("/_dash-update-component", {
            "output": PAGES_OUTPUT,
            "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": path},
                       {"id": "_pages_location", "property": "search", "value": search}],
            "changedPropIds": ["_pages_location.pathname", "_pages_location.search"], "state": []})
        if status != 200 or not answer:
            raise RuntimeError(f"page {path}{search} did not load: HTTP {status}")
        layout = answer["response"]["_pages_content"]["children"]
        # the app shell around the page: the refresh interval, the url
        self.props: dict[str, dict] = {"refresh": {"n_intervals": 0}}
        self.by_pattern: list[tuple[dict, dict]] = []
        for c in _components(layout):
            ident = c["props"].get("id")
            if isinstance(ident, str):
                self.props[ident] = c["props"]
            elif isinstance(ident, dict):
                self.by_pattern.append((ident, c["props"]))
        self.bodies = [b for b in (self._body(d) for d in self.deps if any(i["id"] + "." + i["property"] == REFRESH
                                                                            for i in d["inputs"])) if b]

    def _expand(self, spec: dict, with_value: bool) -> Optional[Any]:
        ident = _parse(spec["id"])
        prop = spec["property"]
        if isinstance(ident, dict):
            return [{"id": i, "property": prop, **({"value": p.get(prop)} if with_value else {})}
                    for i, p in self.by_pattern if _matches(ident, i)]
        if ident not in self.props:
            return None
        return {"id": ident, "property": prop, **({"value": self.props[ident].get(prop)} if with_value else {})}

    def _body(self, dep: dict) -> Optional[dict]:
        out_text = dep["output"]
        multi = out_text.startswith("..")
        parts = out_text.strip(".").split("...") if multi else [out_text]
        outputs = []
        for part in parts:
            ident, prop = part.rsplit(".", 1)
            outputs.append(self._expand({"id": ident, "property": prop}, False))
        # the renderer fires a callback only when its outputs are on the page
        if any(o is None for o in outputs) or all(isinstance(o, list) and not o for o in outputs):
            return None
        inputs = [self._expand(i, True) for i in dep["inputs"]]
        state = [self._expand(s, True) for s in dep["state"]]
        if any(i is None for i in inputs):
            return None
        state = [s if s is not None else {"id": _parse(sp["id"]), "property": sp["property"], "value": None}
                 for s, sp in zip(state, dep["state"])]
        return {"output": out_text, "outputs": outputs if multi else outputs[0], "inputs": inputs,
                "state": state, "changedPropIds": [REFRESH]}

    def tick(self) -> int:
        """One refresh: every refresh callback of the page; returns how many were posted."""
        self.n += 1
        for body in self.bodies:
            for i in body["inputs"]:
                if isinstance(i, dict) and i["id"] == "refresh":
                    i["value"] = self.n
            status, _ = self._post("/_dash-update-component", body)
            if status not in (200, 204):
                self.errors += 1
        return len(self.bodies)
