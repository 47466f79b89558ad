"""Property-based fuzzing of the manifest loader: whatever a hand-written YAML (or JSON)
file holds, loading it either succeeds or raises :class:`ManifestError` with a message
naming the file — never any other exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor_removal.core.manifest import ManifestError, load_manifest

#: Any value a YAML document can hold (and then some: huge integers, NaN, infinities).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=12,
)

#: Values shaped like the field they go into, with arbitrary parts.
shaped = {
    "segments": st.dictionaries(st.text(max_size=8), st.lists(scalars, min_size=2, max_size=2), max_size=3),
    "bbox": st.lists(scalars, min_size=4, max_size=4),
    "name": st.text(alphabet=st.sampled_from("ab./\\_- \x00"), max_size=8),
}

GOOD = {
    "name": "s1_sensor",
    "path": "s1_sensor.mp4",
    "session": 1,
    "condition": "sensor",
    "bbox": [0, 0, 8, 8],
    "segments": {"schaede": [0.0, 1.0]},
    "ground_truth": "gt.mp4",
    "mask": "m.npz",
    "source": None,
}
FIELDS = sorted(GOOD)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load(text: str | bytes, suffix: str = ".yaml") -> None:
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / f"m{suffix}"
        if isinstance(text, bytes):
            f.write_bytes(text)
        else:
            f.write_text(text, encoding="utf-8")
        try:
            subject = load_manifest(f, check_videos=False, require_domains=())
        except ManifestError as exc:
            assert str(f) in str(exc)
            return
        # Names become file names: a loaded name never leads out of its folder.
        for name in [subject.subject, *(r.name for r in subject.recordings)]:
            assert (Path(d) / f"{name}.mp4").resolve().parent == Path(d).resolve(), name


@FUZZ
@given(data=st.data(), field=st.sampled_from(FIELDS))
def test_any_value_in_any_recording_field(data: st.DataObject, field: str) -> None:
    """Any value, or one shaped like the field (a span of arbitrary numbers, ...)."""
    value = data.draw(st.one_of(values, shaped[field]) if field in shaped else values)
    _load(yaml.safe_dump({"subject": "s", "recordings": [{**GOOD, field: value}]}))


@FUZZ
@given(subject=st.one_of(values, shaped["name"]), recordings=values)
def test_any_top_level_values(subject: object, recordings: object) -> None:
    _load(yaml.safe_dump({"subject": subject, "recordings": [GOOD]}))
    _load(yaml.safe_dump({"subject": "s", "recordings": recordings}))


@FUZZ
@given(doc=st.one_of(values, st.text(max_size=200), st.binary(max_size=200)))
def test_any_document(doc: object) -> None:
    """Any structure as YAML and JSON, any text, any bytes (not UTF-8 included)."""
    if isinstance(doc, (str, bytes)):
        _load(doc)
        return
    _load(yaml.safe_dump(doc))
    _load(json.dumps(doc), ".json")


def test_values_the_fuzzer_found() -> None:
    """Regressions, kept explicit: a date PyYAML cannot build, an integer no float holds."""
    _load("subject: 2001-02-30\nrecordings: []\n")
    _load(yaml.safe_dump({"subject": "s", "recordings": [{**GOOD, "segments": {"a": [0, 10**400]}}]}))
    _load(b"subject: caf\xe9\n")
