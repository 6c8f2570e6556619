"""Reading an uploaded CSV file: its encoding (UTF-8 with or without BOM, or GB18030, told apart by
decoding), a header in Chinese or English mapped to our column names, and the rows with the line each
starts on, so every refused row can be reported by its line."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ENCODINGS = ("auto", "utf-8", "gb18030")


class CsvFileError(ValueError):
    """The file as a whole cannot be read: its encoding, its header, or a column it must have."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    values: dict[str, str]
    # Why the row cannot be read as the header says (more cells than columns), if so.
    problem: str | None = None


def decode(data: bytes, encoding: str = "auto") -> tuple[str, str]:
    """The file's text and the encoding it was read with."""
    if encoding not in ENCODINGS:
        raise CsvFileError(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    candidates = ("utf-8", "gb18030") if encoding == "auto" else (encoding,)
    for candidate in candidates:
        try:
            # utf-8-sig reads UTF-8 with or without a byte-order mark.
            return data.decode("utf-8-sig" if candidate == "utf-8" else candidate), candidate
        except UnicodeDecodeError:
            continue
    raise CsvFileError(f"the file is not {' or '.join(c.upper() for c in candidates)} text")


def read_rows(text: str, columns: Mapping[str, Sequence[str]], required: Sequence[str]) -> list[CsvRow]:
    """The rows of `text` by column name; `columns` gives the headers accepted for each column (any
    case). Blank rows are skipped; a header without a column we know is ignored."""
    headers = {header.casefold(): column for column, names in columns.items() for header in names}
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CsvFileError("the file is empty") from None
    except csv.Error as error:
        raise CsvFileError(f"the header is not CSV: {error}") from None
    named: list[str] = []
    for name in header:
        column = headers.get(name.strip().casefold(), "")
        if column and column in named:
            raise CsvFileError(f"the column {column} ({name.strip()}) appears twice")
        named.append(column)
    missing = [c for c in required if c not in named]
    if missing:
        wanted = "; ".join(" or ".join(columns[c]) for c in missing)
        raise CsvFileError(f"the header lacks a column for {wanted}")
    rows: list[CsvRow] = []
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise CsvFileError(f"line {line} is not CSV: {error}") from None
        if any(cell.strip() for cell in cells):
            values = {c: cell.strip() for c, cell in zip(named, cells, strict=False) if c}
            extra = len(cells) > len(named) and any(cell.strip() for cell in cells[len(named) :])
            problem = f"{len(cells)} cells where the header has {len(named)} columns" if extra else None
            rows.append(CsvRow(line, values, problem))
        line = reader.line_num + 1
    return rows
