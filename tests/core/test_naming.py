"""gwanje.naming.slug: the one rule from a device's names to our ids."""
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gwanje.config import ID_PATTERN
from gwanje.naming import slug


@pytest.mark.parametrize("name, want", [
    ("Changwon-1", "changwon-1"),
    ("Press Line 2", "press-line-2"),
    ("Press_201", "press_201"),
    ("Motor/Speed", "motor-speed"),
    ("CycleCount", "cyclecount"),
    ("Node Control/Rebirth", "node-control-rebirth"),
    ("  Spindle  Load (%)  ", "spindle-load"),
    ("_hidden_", "hidden"),
    ("Zone.3.Temp", "zone-3-temp"),
    ("Größe", "gr-e"),  # letters outside a-z are not id characters
    ("창원", ""),  # nothing to make an id of: an explicit mapping is needed
    ("x" * 70 + "/y", "x" * 64),
    ("a" * 63 + "/b", "a" * 63),  # cut at 64, the "-" it would end with trimmed
])
def test_examples(name, want):
    assert slug(name) == want


@given(st.text(max_size=100))
def test_a_slug_is_an_id_or_empty(text):
    s = slug(text)
    assert s == "" or re.fullmatch(ID_PATTERN, s)
    assert slug(s) == s


@given(st.from_regex(r"\A[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?\Z"))
def test_our_ids_are_their_own_slugs(ident):
    # the simulator and devices named after plant.yaml keep working without a mapping
    assert slug(ident) == ident
