"""``Rows``: per-bar records stored column-wise read back exactly as the tuples appended."""

import math

import pytest

from lbml.engine.columns import Rows
from lbml.engine.recorder import RunRecord


def test_rows_round_trip_exactly_and_behave_like_a_list_of_tuples():
    rows = Rows("qdd")
    data = [(1_700_000_000_000_000_000, 0.1 + 0.2, math.inf), (2, -0.0, math.nan), (3, 5e-324, 1.7976931348623157e308)]
    for row in data:
        rows.append(row)
    assert len(rows) == 3 and rows[0] == data[0] and rows[-1] == data[-1]
    assert rows[:1] == data[:1] and [r[0] for r in rows] == [1_700_000_000_000_000_000, 2, 3]
    assert math.isnan(rows[1][2]) and math.copysign(1.0, rows[1][1]) == -1.0
    rows[-1] = (3, 1.5, 2.5)
    assert rows[-1] == (3, 1.5, 2.5) and list(rows.column(1)) == [0.1 + 0.2, -0.0, 1.5]
    assert Rows("qd", [(1, 2.0)]) == Rows("qd", [(1, 2.0)]) == [(1, 2.0)] and not Rows("qd")
    with pytest.raises(ValueError, match="row of 2 fields, expected 3"):
        rows.append((1, 2.0))


def test_run_record_frames_from_rows_and_from_lists_agree():
    equity = [(60_000_000_000, 100.0, 99.0, 10.0), (120_000_000_000, 101.0, 99.0, 10.5)]
    from_list = RunRecord(equity=equity)
    built = RunRecord()
    for row in equity:
        built.equity.append(row)
    assert from_list.equity == built.equity
    frame = built.equity_frame()
    assert list(frame.columns) == ["equity", "balance", "close"] and frame.index.name == "ts"
    assert str(frame.index[0]) == "1970-01-01 00:01:00+00:00" and frame["close"].tolist() == [10.0, 10.5]
    assert built.risk_frame().empty
