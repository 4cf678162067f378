"""Line-protocol encoding: exact escaping, and a property test through the real influxd.

The property: for any batch of samples with arbitrary names and values (Korean, quotes,
backslashes, newlines, NUL, huge and tiny floats, NaN), every sample is either given back
unchanged by the store or refused with a counted reason, and refusing one never loses the
others. The same property is checked on the embedded store, so both refuse the same things.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gwanje.model import Event, Quality, Sample
from storage.lineprotocol import encode_events, encode_samples, escape_string_field, escape_tag

T0 = 1_767_225_600 * 1_000_000_000


# ------------------------------------------------------------------ exact encodings
def test_sample_lines_escape_tags_and_string_fields():
    enc = encode_samples([
        Sample("창원 1", "l,1", "m=1", 'sig "x"', 1.5, T0),
        Sample("s", "", "m", "lot", 'he said "hi" \\o/\nbye', T0 + 1, Quality.BAD),
        Sample("s", "l", "m", "big", 1e300, T0 + 2, Quality.UNCERTAIN),
        Sample("s", "l", "m", "whole", 3.0, -5),
    ])
    assert enc.rejected == []
    assert enc.lines == 4
    # expected lines written as raw strings: every backslash below is in the output
    assert enc.body.split("\n") == [
        r'sample,site=창원\ 1,line=l\,1,machine=m\=1,signal=sig\ "x" value=1.5,q=0i ' + str(T0),
        # the empty line tag is left out; the newline stays inside the quoted field
        r'sample,site=s,machine=m,signal=lot text="he said \"hi\" \\o/',
        f'bye",q=2i {T0 + 1}',
        f"sample,site=s,line=l,machine=m,signal=big value=1e+300,q=1i {T0 + 2}",
        "sample,site=s,line=l,machine=m,signal=whole value=3.0,q=0i -5",
    ]


def test_event_lines_carry_json_as_an_escaped_string_field():
    enc = encode_events([Event("alarm", T0, "s", "", "m 1", "k", {"msg": 'say "hi"', "p": "c:\\tmp"})])
    # JSON {"msg":"say \"hi\"","p":"c:\\tmp"}, then \ and " escaped once more for the field
    assert enc.body == r'event,kind=alarm,site=s,machine=m\ 1,key=k data="{\"msg\":\"say \\\"hi\\\"\",\"p\":\"c:\\\\tmp\"}" ' + str(T0)


def test_a_typed_event_is_its_event_point_then_its_typed_point_with_fixed_field_types():
    closed = Event("state", T0, "창원 1", "l,1", "m1", "", {"state": "down", "code": 4.0, "end_ns": T0 + 90 * 10**9,
                                                          "prev_state": "running"})
    shift = Event("oee_shift", T0, "s", "l", "", "2026-01-01/day",
                  {"oee": 1, "availability": None, "total": 12.0, "run_s": 3600, "flags": ["low_coverage"]})
    enc = encode_events([closed, shift])
    assert enc.points[1] == (r"machine_state,site=창원\ 1,line=l\,1,machine=m1,state=down "
                             f'code="4",end_ns={T0 + 90 * 10**9}i,duration_s=90.0,prev_state="running" {T0}')
    # the ratio 1 and the seconds 3600 are floats, the count 12.0 an integer; None is left out
    assert enc.points[3] == ('oee_shift,site=s,line=l,shift=day,level=line shift_key="2026-01-01/day",'
                             f'oee=1.0,run_s=3600.0,total=12i,flags="low_coverage" {T0}')
    assert enc.points[0].startswith("event,kind=state,") and enc.points[2].startswith("event,kind=oee_shift,")
    assert enc.owners == [0, 0, 1, 1] and enc.left_out == []


def test_request_bodies_split_between_points_never_inside_a_text_with_a_newline():
    enc = encode_samples([Sample("s", "l", "m", "lot", "a\nb", 1), Sample("s", "l", "m", "x", 1.0, 2),
                          Sample("s", "l", "m", "x", 2.0, 3)])
    assert list(enc.bodies(2)) == [
        b'sample,site=s,line=l,machine=m,signal=lot text="a\nb",q=0i 1\n'
        b"sample,site=s,line=l,machine=m,signal=x value=1.0,q=0i 2",
        b"sample,site=s,line=l,machine=m,signal=x value=2.0,q=0i 3",
    ]


def test_escape_helpers():
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_tag('q"u\\ote') == 'q"u\\ote'  # quotes and a lone backslash need nothing in tags
    assert escape_string_field('a"b\\c') == 'a\\"b\\\\c'
    for unwritable in ("a\nb", "a\rb", "a\\", "a\\,b", "a\\ b", "a\\=b"):
        with pytest.raises(ValueError):
            escape_tag(unwritable)


def test_refused_samples_are_reported_with_reasons_and_the_rest_encoded():
    enc = encode_samples([
        Sample("s", "l", "m", "a", float("nan"), T0),
        Sample("s", "l", "m", "a", 2.0, T0),
        Sample("s\nx", "l", "m", "a", 2.0, T0),
        Sample("s", "l", "m", "a", 2.0, 1.5),  # type: ignore[arg-type]
    ])
    assert enc.lines == 1
    assert [r for _, r in enc.rejected] == ["value_not_finite", "name_has_newline", "ts_not_int"]


# ------------------------------------------------------------------ property, real servers
SPECIAL = list(',= "\'\\\n\r\t\x00') + ["창원", "프레스", "🏭", "\\,", "\\ "]
names = st.lists(st.one_of(st.characters(), st.sampled_from(SPECIAL)), max_size=6).map("".join)
values = st.one_of(
    st.floats(),  # includes NaN, ±inf, subnormals, ±1.797e308
    st.sampled_from([5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, 0.1, -0.0]),
    names,
)
samples = st.tuples(names, names, names, names, values, st.sampled_from(list(Quality)))


def utf8(text: str) -> bool:
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in text)  # lone surrogates cannot be stored


def plain(s: Sample) -> bool:
    """Names and values any store must accept (no character with a special meaning)."""
    ok_name = all(utf8(n) and not any(c in n for c in "\n\r\\\x00")
                  for n in (s.site, s.line, s.machine, s.signal))
    ok_value = isinstance(s.value, str) and "\x00" not in s.value and utf8(s.value) or (
        isinstance(s.value, float) and s.value - s.value == 0.0)
    return ok_name and ok_value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(samples, min_size=1, max_size=8))
def test_every_sample_round_trips_or_is_refused_with_a_reason(new_store, batch):
    store = new_store()
    # a distinct signal per sample, so each is the latest of its own series
    written = [Sample(site, line, machine, f"{i}:{signal}", value, T0 + i, q)
               for i, (site, line, machine, signal, value, q) in enumerate(batch)]
    store.write_samples(written)
    rejected_samples = sum(store.rejects.counts().values())
    store.write_events([Event(s.signal, s.ts, s.site, s.line, s.machine, s.signal, {"v": s.value})
                        for s in written if isinstance(s.value, str)])

    got = {s.series: s for s in store.latest()}
    refused = 0
    for s in written:
        if s.series in got:
            assert got[s.series] == s  # identical strings, value, ts and quality
        else:
            refused += 1
            assert not plain(s), f"a plain sample was lost: {s!r}"
    assert refused == rejected_samples
    assert len(got) == len(written) - refused

    for s in written:
        if isinstance(s.value, str) and s.series in got:
            assert store.events(s.signal, s.ts, s.ts + 1, site=s.site, key=s.signal) == [
                Event(s.signal, s.ts, s.site, s.line, s.machine, s.signal, {"v": s.value})]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | names,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(names, children, max_size=3),
    max_leaves=8)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(datas=st.lists(st.dictionaries(names, json_values, max_size=4), min_size=1, max_size=5))
def test_event_data_round_trips_or_is_refused(new_store, datas):
    store = new_store()
    written = [Event("note", T0 + i, "s", "l", "m", f"k{i}", d) for i, d in enumerate(datas)]
    store.write_events(written)
    got = {e.key: e for e in store.events("note", T0, T0 + len(written))}
    for e in written:
        if e.key in got:
            assert got[e.key] == e  # keys, nesting, unicode, quotes and backslashes unchanged
    # only text UTF-8 cannot carry (lone surrogates) is refused; JSON escapes the rest
    assert len(written) - len(got) == sum(store.rejects.counts().values())
    assert all(reason == "event_data_bad_text" for reason in store.rejects.counts())
