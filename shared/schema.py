"""The input a service's scorer declares, and checking a job's CSV against it: pure functions.

A scorer may declare the columns it reads and their types as an attribute of the function:

    def score(frame, global_parameters): ...
    score.input_columns = {"age": "integer", "hours-per-week": "number", "occupation": "string"}

Types are `integer`, `number` and `string`. The service's swagger.json publishes them. Before
scoring, the input's header must name every declared column (extra columns are passed through
untouched, as BES did); then each chunk's values are checked against the declared types (an
empty cell is a missing value, and allowed). The first fault ends the job Failed, naming the
row (counted from 1 after the header, as in the input) and the column; nothing is written.
"""
from __future__ import annotations

import re

import pandas as pd

TYPES = ("integer", "number", "string")
SWAGGER_TYPES = {"integer": {"type": "integer", "format": "int64"}, "number": {"type": "number", "format": "double"},
                 "string": {"type": "string"}}
_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def declared(scorer) -> dict[str, str] | None:
    """The columns a scorer declares (None: it declares none), or a ValueError saying why the
    declaration is not one."""
    columns = getattr(scorer, "input_columns", None)
    if columns is None:
        return None
    if not isinstance(columns, dict) or not columns:
        raise ValueError("input_columns must be a non-empty dict of column name -> type")
    for name, kind in columns.items():
        if not isinstance(name, str) or not name:
            raise ValueError("input_columns names must be non-empty strings")
        if kind not in TYPES:
            raise ValueError(f"input_columns[{name!r}] is {kind!r}; the types are {', '.join(TYPES)}")
    return dict(columns)


def header_problem(columns: list[str], expected: dict[str, str]) -> str | None:
    """What the input's header lacks, if anything."""
    missing = [name for name in expected if name not in columns]
    if not missing:
        return None
    return (f"the input lacks the column(s) {', '.join(missing)} that the service reads (its header has "
            f"{', '.join(columns[:20]) or 'no columns'}{', ...' if len(columns) > 20 else ''})")


def _is_integer(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers.notna() & ((numbers % 1) == 0)


def value_problem(frame: pd.DataFrame, expected: dict[str, str], first_row: int) -> str | None:
    """The first value of the chunk that is not of its declared type, if any; `first_row` is
    the chunk's first row in the input (1 = the row after the header)."""
    earliest: tuple[int, str, object, str] | None = None
    for name, kind in expected.items():
        if kind == "string" or name not in frame.columns:
            continue
        values = frame[name]
        if kind == "integer" and pd.api.types.is_integer_dtype(values):
            continue
        if kind == "number" and pd.api.types.is_numeric_dtype(values):
            continue
        present = values.notna() & (values.astype(str).str.strip() != "")
        fits = _is_integer(values) if kind == "integer" else pd.to_numeric(values, errors="coerce").notna()
        bad = (present & ~fits).to_numpy().nonzero()[0]
        if len(bad) and (earliest is None or bad[0] < earliest[0]):
            earliest = (int(bad[0]), name, values.iloc[bad[0]], kind)
    if earliest is None:
        return None
    position, name, value, kind = earliest
    return (f"row {first_row + position}, column {name}: {str(value)[:40]!r} is not "
            f"{'an integer' if kind == 'integer' else 'a number'}, as the service declares {name}")


def parser_problem(message: str, first_row: int) -> str:
    """pandas' reading error of a chunk, in the input's own row numbers."""
    found = _FIELDS.search(message)
    if found:
        expected, line, saw = (int(group) for group in found.groups())
        # Line 1 of what pandas read is the header; line 2 is the chunk's first row.
        return f"row {first_row + line - 2} has {saw} fields where the header has {expected}"
    return message.strip().splitlines()[-1] if message.strip() else "it cannot be read as CSV"


def swagger_definition(expected: dict[str, str] | None) -> dict:
    """The input's rows, as swagger.json describes them."""
    if expected is None:
        return {"type": "object", "description": "the scorer declares no input columns"}
    return {"type": "object", "required": list(expected),
            "properties": {name: SWAGGER_TYPES[kind] for name, kind in expected.items()}}
