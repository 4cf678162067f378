"""Shared inputs of the dashboard tests: the demo plant config and a real EmbeddedStore."""
from __future__ import annotations

from pathlib import Path

import pytest

from gwanje.config import load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def plant_config():
    return load_config(REPO / "config", env={})


@pytest.fixture()
def store():
    from storage.embedded import EmbeddedStore

    s = EmbeddedStore()
    yield s
    s.close()
