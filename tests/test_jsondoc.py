"""The views' JSON writer prints what ``json.dumps(indent=2, ensure_ascii=False)`` prints,
byte for byte, whatever the value and however its rows are streamed."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_orch_recovery.report.jsondoc import Rows, document_chunks, dumps
from pytest_orch_recovery.report.safetext import json_document


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None))
    | st.sampled_from([Colour.RED, Level.HIGH, "\x9b\u202e\x1b", -0.0, 1e300])
)
_KEYS = st.text(max_size=8) | st.integers() | st.floats() | st.booleans() | st.none()
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(_KEYS, inner, max_size=4)
    ),
    max_leaves=30,
)


def _reference(value: Any, allow_nan: bool = True) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=allow_nan)


@given(_VALUES)
def test_dumps_is_json_dumps(value: Any) -> None:
    assert dumps(value) == _reference(value)


@given(st.dictionaries(st.text(max_size=5), _VALUES, max_size=4), st.lists(_VALUES, max_size=40))
def test_rows_stream_as_the_list_they_hold(head: dict[str, Any], rows: list[Any]) -> None:
    document = {**head, "rows": Rows(iter(rows)), "after": {"more": Rows(rows[:3])}}
    expected = {**head, "rows": rows, "after": {"more": rows[:3]}}
    chunks = list(document_chunks(document))
    assert "".join(chunks) == json_document(_reference(expected)) + "\n"


def test_a_long_list_of_rows_comes_in_several_pieces() -> None:
    rows = [{"task_id": f"t{i}", "elapsed": i / 3} for i in range(5000)]
    chunks = list(document_chunks({"tasks": Rows(iter(rows))}))
    assert len(chunks) > 2
    assert "".join(chunks) == json_document(_reference({"tasks": rows})) + "\n"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_out_of_range_numbers_are_refused_as_json_refuses_them(value: float) -> None:
    with pytest.raises(ValueError) as ours:
        dumps({"x": [value]}, allow_nan=False)
    with pytest.raises(ValueError) as theirs:
        _reference({"x": [value]}, allow_nan=False)
    assert str(ours.value) == str(theirs.value)


def test_what_json_cannot_hold_is_refused() -> None:
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        dumps({"x": object()})
    with pytest.raises(TypeError, match="keys must be"):
        dumps({(1, 2): 1})
