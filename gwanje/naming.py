"""One rule for turning a foreign name (an OPC UA browse name, a Sparkplug metric, an MQTT
topic level) into an id of plant.yaml (gwanje.config.ID_PATTERN)."""
from __future__ import annotations

import re

_OUTSIDE = re.compile(r"[^a-z0-9]+")
_MAX_LEN = 64  # ID_PATTERN: one leading character and up to 63 more


def slug(text: str) -> str:
    """Lowercase; every run of characters outside [a-z0-9] becomes one "-"; trimmed of "-"
    at both ends and cut to 64 characters: "Press Line 2" -> "press-line-2",
    "Motor.Speed" -> "motor-speed". A name with no letter or digit gives "" (not an id:
    the caller must name it otherwise)."""
    s = _OUTSIDE.sub("-", text.lower()).strip("-")
    return s[:_MAX_LEN].rstrip("-")
