"""Fixtures of the alarm tests: the demo plant config (loaded once)."""
from __future__ import annotations

import pytest

from gwanje.config import load_config
from tests.alerts.helpers import REPO


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "config", env={})
