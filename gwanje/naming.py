"""The one rule that turns a device's own names into our ids (gwanje.config.ID_PATTERN).

Third-party devices name things their way: a Sparkplug B group "Changwon-1", an edge node
"Press Line 2", a device "Press_201", a metric "Motor/Speed". `slug` maps each of them to the
id plant.yaml uses for it, so such a device is understood without a hand-written table
(docs/payloads.md, "Sparkplug B"):

1. lower-case (ASCII letters; other letters are not id characters and go in step 2)
2. every run of characters outside [a-z0-9_-] becomes one "-"
3. "-" and "_" are trimmed from both ends (an id starts with a letter or digit)
4. cut to 64 characters (the id's maximum), and trimmed again

"Changwon-1" -> "changwon-1", "Press Line 2" -> "press-line-2", "Press_201" -> "press_201",
"Motor/Speed" -> "motor-speed", "Node Control/Rebirth" -> "node-control-rebirth".
A valid id that begins and ends with a letter or digit is its own slug, so devices that
already use our ids (the simulator, the JSON topics) map to themselves. A name with no
ASCII letter or digit (e.g. "창원") has an empty slug: no id; such a device needs an explicit
mapping (system.yaml mqtt.sparkplug.devices).

Pure and dependency-free: the collectors and the discovery tool use the same function.
"""
from __future__ import annotations

import re

MAX_ID_LEN = 64  # gwanje.config.ID_PATTERN: one leading character and up to 63 more

_OUTSIDE = re.compile(r"[^a-z0-9_-]+")
_TRIM = "-_"


def slug(text: str) -> str:
    """The id for a device's name, or "" when the name has no letter or digit we can use."""
    s = _OUTSIDE.sub("-", text.lower()).strip(_TRIM)
    if len(s) > MAX_ID_LEN:
        s = s[:MAX_ID_LEN].rstrip(_TRIM)
    return s
