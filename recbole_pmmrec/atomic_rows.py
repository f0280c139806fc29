"""Row checks of an atomic file, before RecBole's pandas reads it: one streaming pass with the csv module.

RecBole reads atomic files with ``pandas.read_csv(engine="python")``, which parses with the csv module (same
quoting) and says little when a row is broken: a row with fewer fields than the header is silently padded with
NaN (a raw newline inside a title makes a phantom item out of the rest of the line), a float column with text
in it fails deep inside pandas, ``nan`` / ``inf`` / ``1e400`` timestamps are taken as they are and then order
(or disorder) every user's sequence. :func:`check_rows` reads the file the same way and refuses each of these
with a :class:`~recbole_pmmrec.errors.PMMRecDataError` that names the file, the line and the column.

What is refused (an error: the data cannot be used as it is, and guessing would change the data set):

* an empty file (no header); an ``.inter`` or ``.item`` with a header and no rows;
* a header column that is not ``name:type`` with a RecBole type (token, token_seq, float, float_seq); a
  byte-order mark before the header (RecBole would keep it in the first column's name);
* the time field missing from the ``.inter`` header (or from ``load_col``) while the split orders by time;
* a row with more fields than the header, or without a field that is loaded (a row without its timestamp; a
  raw newline inside a cell: the message says which line is broken and on which line it continues);
* a loaded float column with text in it, or an infinite value (``inf``, ``1e400``);
* a timestamp that is empty, ``nan`` or not finite;
* text that is not in the configured ``encoding``.

What is dropped, counted and logged (pandas skips these too, so dropping them changes nothing): blank lines.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from recbole_pmmrec.errors import PMMRecDataError

logger = logging.getLogger(__name__)

TYPES = ("token", "token_seq", "float", "float_seq")
# pandas reads these as a missing value (NaN); RecBole fills a missing float with the column's mean
_MISSING = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                      "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
_MUST_HAVE_ROWS = ("inter", "item")
_EXAMPLE_HEADER = {"inter": "user_id:token<TAB>item_id:token<TAB>timestamp:float",
                   "item": "item_id:token<TAB>title:token_seq"}


def parse_header(path: Path, line: str, separator: str) -> list[tuple[str, str]]:
    """``name:type`` columns of a header line (RecBole splits it with the field separator, without quoting)."""
    if line.startswith("\ufeff"):
        raise PMMRecDataError(
            f"{path}, line 1: the file starts with a byte-order mark, which RecBole keeps in the first column's name "
            f"('\\ufeff{line[1:].split(separator)[0][:40]}'); save it without one (utf-8, not utf-8-sig)")
    columns = []
    for index, cell in enumerate(line.rstrip("\r\n").split(separator), start=1):
        name, _, kind = cell.rpartition(":")
        if not name or kind not in TYPES:
            raise PMMRecDataError(
                f"{path}, line 1, column {index}: header cell {cell!r} is not name:type with a type of "
                f"{', '.join(TYPES)}; RecBole atomic files start with a header like "
                f"{_EXAMPLE_HEADER.get(path.suffix.lstrip('.'), _EXAMPLE_HEADER['inter'])}")
        columns.append((name, kind))
    return columns


def loaded_columns(columns: list[tuple[str, str]], suffix: str, load_col, unload_col) -> list[int]:
    """Indices of the columns RecBole loads (its ``_get_load_and_unload_col`` rules)."""
    if load_col is None or (isinstance(load_col, dict) and load_col.get(suffix) == "*"):
        wanted = None
    elif isinstance(load_col, dict) and suffix in load_col:
        wanted = set(load_col[suffix])
    else:
        return []  # a file missing from a load_col dict is not loaded at all
    unwanted = set(unload_col[suffix]) if isinstance(unload_col, dict) and suffix in unload_col else set()
    return [i for i, (name, _) in enumerate(columns) if (wanted is None or name in wanted) and name not in unwanted]


def _float_problem(value: str, is_time: bool) -> str | None:
    """Why ``value`` cannot be a float cell (a timestamp when ``is_time``), or None."""
    if value.strip() in _MISSING:
        return f"{'no timestamp' if not value.strip() else repr(value)}: every interaction needs a finite timestamp" \
            if is_time else None
    try:
        number = float(value)
    except ValueError:
        return f"{value[:40]!r} is not a number"
    if not math.isfinite(number):
        return f"{value[:40]!r} is not a finite number"
    return None


def check_rows(path: str | Path, *, separator: str = "\t", encoding: str = "utf-8", load_col=None, unload_col=None,
               time_field: str | None = None, time_ordered: bool = False) -> dict:
    """Check every row of one atomic file (see the module docstring) -> {"rows": n, "blank_lines_skipped": k}.

    ``time_field`` is the config's ``TIME_FIELD`` (checked in ``.inter`` files); ``time_ordered``: the split
    orders interactions by time, so the column must be there."""
    path = Path(path)
    suffix = path.suffix.lstrip(".")
    if isinstance(load_col, dict) and suffix not in load_col:  # RecBole does not open the file at all
        return {"rows": None, "blank_lines_skipped": 0}
    with open(path, encoding=encoding, newline="") as fh:
        try:
            header_line = fh.readline()
        except UnicodeDecodeError:
            raise _not_text(path, encoding) from None
        if not header_line.strip():
            raise PMMRecDataError(
                f"{path} is empty{' (line 1 is blank)' if header_line else ''}: an atomic file starts with a header "
                f"line like {_EXAMPLE_HEADER.get(suffix, _EXAMPLE_HEADER['inter'])}, then one row per line; write the "
                f"rows, or remove the file")
        columns = parse_header(path, header_line, separator)
        width = len(columns)
        loaded = loaded_columns(columns, suffix, load_col, unload_col)
        names = [f"{name}:{kind}" for name, kind in columns]
        time_index = next((i for i, (name, _) in enumerate(columns) if name == time_field), None) \
            if suffix == "inter" and time_field else None
        if time_ordered and suffix == "inter" and time_field and (time_index is None or time_index not in loaded):
            where = "the header" if time_index is None else "the columns load_col reads"
            raise PMMRecDataError(
                f"{path}: the time field '{time_field}' is not in {where} ({', '.join(names)}) but the split orders "
                f"interactions by time (eval_args order: TO); add a column {time_field}:float, or split at random "
                f"(eval_args: {{order: RO}}), or name the time column with TIME_FIELD")
        if not loaded:
            return {"rows": None, "blank_lines_skipped": 0}
        need = max(loaded) + 1
        floats = [(i, i == time_index) for i in loaded if columns[i][1] == "float"]
        rows = blank = 0
        reader = csv.reader(fh, delimiter=separator)  # pandas' python engine: the csv module, same quoting
        try:
            for row in reader:
                n = len(row)
                if n != width:
                    if n == 0:
                        blank += 1
                        continue
                    if n > width or n < need:
                        _bad_width(path, reader, row, names, need, line_offset=1)
                for i, is_time in floats:
                    problem = _float_problem(row[i], is_time) if i < n else None
                    if problem:
                        raise PMMRecDataError(f"{path}, line {reader.line_num + 1}, column {i + 1} ('{names[i]}'): "
                                              f"{problem}; fix or remove that row")
                rows += 1
        except UnicodeDecodeError:
            raise _not_text(path, encoding) from None
        except csv.Error as exc:
            raise PMMRecDataError(f"{path}, line {reader.line_num + 1}: {exc}; fix that row (an unbalanced quote?)"
                                  ) from None
    if rows == 0 and suffix in _MUST_HAVE_ROWS:
        raise PMMRecDataError(f"{path} has a header but no rows: add one row per "
                              f"{'interaction' if suffix == 'inter' else 'item'}, or remove the file")
    if blank:
        logger.warning("%s: %d blank line(s) skipped (RecBole skips them too)", path, blank)
    return {"rows": rows, "blank_lines_skipped": blank}


def _bad_width(path: Path, reader, row: list[str], names: list[str], need: int, line_offset: int) -> None:
    """Raise for a row with too many fields, or without a loaded field; name a raw newline when it is one."""
    line, n, width = reader.line_num + line_offset, len(row), len(names)
    if n > width:
        raise PMMRecDataError(
            f"{path}, line {line}: {n} fields, the header has {width} ({', '.join(names)}); a separator inside a "
            f"cell? Remove it or quote the cell")
    following = next(reader, None)
    if following is not None and 0 < len(following) < width and n + len(following) - 1 == width:
        raise PMMRecDataError(
            f"{path}, line {line}: the row breaks off inside column {n} ('{names[n - 1]}') and continues on line "
            f"{reader.line_num + line_offset} ({len(following)} fields; read alone it would be a phantom row "
            f"{following[0][:40]!r}): a raw newline inside a cell. Remove the newline from that cell (or quote the cell)")
    raise PMMRecDataError(
        f"{path}, line {line}: {n} field(s), the header has {width}: column {n + 1} ('{names[n]}') is missing; "
        f"complete or remove that row")


def _not_text(path: Path, encoding: str) -> PMMRecDataError:
    """The error for a file that does not decode: find its first such line (a second pass, only on failure)."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                return PMMRecDataError(f"{path}, line {number}, byte {exc.start + 1}: not {encoding} text "
                                       f"({exc.reason}); convert the file to {encoding}, or set the encoding key")
    return PMMRecDataError(f"{path}: not {encoding} text; convert the file to {encoding}, or set the encoding key")


__all__ = ["check_rows", "parse_header", "loaded_columns", "TYPES"]
