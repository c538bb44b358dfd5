"""A list of fixed-shape rows stored column by column in typed arrays.

A run records one equity row, one risk row and one prediction per bar. As a list of tuples of
Python objects a 4-field row costs ~190 bytes; here it costs 8 bytes per field, so a 1M-bar run
keeps its records in tens of megabytes instead of hundreds. Rows read back as tuples of Python
``int``/``float`` with exactly the values appended (float64 and int64 round-trip exactly).
"""

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np


class Rows(Sequence):
    """Append-only rows of ``typecodes`` (``"q"`` int64, ``"d"`` float64), read as tuples."""

    __slots__ = ("_columns",)

    def __init__(self, typecodes: str, rows: Iterable[Sequence[Any]] = ()) -> None:
        self._columns = tuple(array(code) for code in typecodes)
        for row in rows:
            self.append(row)

    def append(self, row: Sequence[Any]) -> None:
        columns = self._columns
        if len(row) != len(columns):
            raise ValueError(f"row of {len(row)} fields, expected {len(columns)}")
        for column, value in zip(columns, row):
            column.append(value)

    def __len__(self) -> int:
        return len(self._columns[0])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(zip(*(column[index] for column in self._columns)))
        return tuple(column[index] for column in self._columns)

    def __setitem__(self, index: int, row: Sequence[Any]) -> None:
        if len(row) != len(self._columns):
            raise ValueError(f"row of {len(row)} fields, expected {len(self._columns)}")
        for column, value in zip(self._columns, row):
            column[index] = value

    def __iter__(self) -> Iterator[tuple]:
        return zip(*self._columns)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rows):
            return self._columns == other._columns
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"Rows({len(self)} rows × {len(self._columns)} fields)"

    def column(self, j: int) -> np.ndarray:
        """A copy of field ``j`` as a NumPy array (int64 or float64)."""
        return np.array(self._columns[j])
