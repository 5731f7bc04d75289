"""statement_parts: how SQLite and PostgreSQL split a large batch write into statements of one
transaction (each binding about a mebibyte: the driver copies or encodes a statement's values in
one call, holding the event loop)."""

from __future__ import annotations

from statekit.storage._statements import BYTES_PER_STATEMENT, statement_parts


def test_parts_hold_about_a_mebibyte_of_values_and_cover_them_all_in_order() -> None:
    mib = BYTES_PER_STATEMENT
    assert statement_parts([b"x" * 300_000] * 7 + [None]) == [(0, 3), (3, 6), (6, 8)]
    assert statement_parts([b"x" * (5 * mib), b"y"]) == [(0, 1), (1, 2)]  # a large value alone
    assert statement_parts([b"y", b"x" * (5 * mib), b"y"]) == [(0, 1), (1, 2), (2, 3)]
    assert statement_parts([b"x" * 300] * 3000) == [(0, 3000)]  # small values: one statement
    assert statement_parts([]) == [(0, 0)]
    # a skewed batch: the large values do not share a statement because the average is small
    skewed = [b"x" * 100_000] * 100 + [b"y" * 10] * 1900
    assert all(
        sum(len(v) for v in skewed[start:end]) <= mib or end - start == 1
        for start, end in statement_parts(skewed)
    )


def test_parts_hold_at_most_most_rows_values() -> None:
    parts = statement_parts([7] * 4500, most_rows=2000)
    assert parts == [(0, 2000), (2000, 4000), (4000, 4500)]
    assert statement_parts([b"x" * 600_000] * 4, most_rows=1) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_parts_count_the_bytes_they_cover() -> None:
    mib = 1 << 20
    assert statement_parts([b"x" * 300_000] * 7 + [None]).total_bytes == 2_100_008
    assert statement_parts([b"x" * (5 * mib), b"y"]).total_bytes == 5 * mib + 1
    assert statement_parts([7] * 4500, most_rows=2000).total_bytes == 36_000
    assert statement_parts([]).total_bytes == 0
