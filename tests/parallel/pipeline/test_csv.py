"""Schedule files as people write them: a byte-order mark, any line ending, blank lines
around the ranks; and as they should not: an empty row between ranks, digits that are
not ASCII. Every registered schedule reads back from its CSV in every such form, and
any text at all is either a schedule or one ScheduleError."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simulator.errors import LayoutError, ScheduleError
from simulator.parallel.pipeline import get_schedule, parse_csv, schedule_names

pytestmark = pytest.mark.fuzz

ENDINGS = ["\n", "\r\n", "\r"]


def written(schedule, ending: str, bom: str, before: str, after: str) -> str:
    """The schedule's CSV as a person's editor may save it."""
    rows = schedule.to_csv().splitlines()
    return bom + before + ending.join(rows) + ending + after


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.sampled_from(schedule_names()),
    st.sampled_from([(2, 2), (2, 4), (4, 8)]),
    st.sampled_from(ENDINGS),
    st.sampled_from(["", "\ufeff"]),
    st.sampled_from(["", "\n", "\r\n\r\n", ",,\n"]),
    st.sampled_from(["", "\n", "\r\r", "\n,,,\n"]),
)
def test_every_schedule_reads_back_from_its_csv_however_it_was_saved(
    name, sizes, ending, bom, before, after
) -> None:
    stages, microbatches = sizes
    info = get_schedule(name)
    chunks = 2 if info.chunked else 1
    try:
        schedule = info(stages, microbatches, chunks)
    except LayoutError:  # sizes the schedule's rules refuse (dualpipe: microbatches >= 2 pp)
        assume(False)
    parsed = parse_csv(written(schedule, ending, bom, before, after), "mine.csv")
    assert parsed.ranks == schedule.ranks
    assert (parsed.num_stages, parsed.microbatches) == (schedule.num_stages, microbatches)


def test_an_empty_row_between_ranks_is_named() -> None:
    with pytest.raises(ScheduleError, match="empty row 2, between two ranks"):
        parse_csv("0F0,0B0\r\n\r\n1F0,1B0\r\n", "mine.csv")
    with pytest.raises(ScheduleError, match="empty row 3, between two ranks"):
        parse_csv("\n0F0,0B0\n,,\n1F0,1B0\n", "mine.csv")


@pytest.mark.parametrize("digit", ["\u0661", "\u0967", "\uff11", "\U0001d7d9"])
def test_digits_that_are_not_ascii_are_refused(digit) -> None:
    # int() reads them all as 1; a schedule file must not
    with pytest.raises(ScheduleError, match="rank 0, step 0: cannot read action"):
        parse_csv(f"1F{digit}\n", "mine.csv")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet="0123456789FBW, \t\r\n\"'\ufeff\x00\u0661\u2028;", max_size=40))
def test_any_text_is_a_schedule_or_one_schedule_error(text) -> None:
    try:
        schedule = parse_csv(text, "mine.csv")
    except ScheduleError as err:
        assert "\n" not in str(err).split(":", 1)[0]
        return
    assert schedule.ranks and all(len(row) for row in schedule.ranks)
