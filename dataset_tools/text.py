"""Reading text files line by line (plain or gzip, UTF-8 with a counted fallback) and cleaning cells.

Every text cell written to an atomic file goes through :func:`clean_text` (the writer applies it
once more): control characters (tab, newline, CR, NUL ...) and Unicode line separators become
spaces, runs of whitespace collapse to one space, so words stay space-separated (RecBole's
``token_seq``) and a cell never breaks a row.

Readers take source text through :func:`text_field` (plain text) or :func:`strip_html` (HTML):
both decode HTML character references (``&amp;``, ``&quot;``, ``&#39;``, ``&#x2605;``) and count
each field that held one as the fallback ``html_entities_decoded``. Only references closed by ``;``
are decoded: HTML5's legacy forms without it would turn ``Barnes&noble`` into ``Barnes¬ble``.
"""

from __future__ import annotations

import csv
import gzip
import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

from recbole_pmmrec.errors import PMMRecDataError

from dataset_tools.base import Report

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_REFERENCE = r"(?:#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,7}|[A-Za-z][A-Za-z0-9]{1,31});"  # after '&'
_ENTITY = re.compile("&" + _REFERENCE)
_BARE_AMPERSAND = re.compile(f"&(?!{_REFERENCE})")
ENTITIES_DECODED = "html_entities_decoded"
_BLOCK_TAGS = frozenset(["br", "p", "div", "li", "ul", "ol", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "table"])


def clean_text(value: str | None) -> str:
    """One line of text: no tabs, newlines, CR or other control characters; single spaces."""
    if not value:
        return ""
    return " ".join(_CONTROL.sub(" ", value).split())


def decode_entities(value: str) -> str:
    """``value`` with its ``;``-terminated character references decoded (unknown names stay as they are)."""
    return _ENTITY.sub(lambda m: html.unescape(m.group()), value) if "&" in value else value


def count_entities(value: str, report: Report | None, where: str | None = None) -> bool:
    """Whether decoding changes ``value``; if so, one ``html_entities_decoded`` in ``report`` (call it
    once per field)."""
    changed = decode_entities(value) != value
    if changed and report is not None:
        shown = _ENTITY.search(value).group()
        report.fallback(ENTITIES_DECODED, example=f"{where}: {shown}" if where else shown)
    return changed


def text_field(value: str | None, report: Report | None = None, where: str | None = None) -> str:
    """A plain-text source field: character references decoded (counted), then :func:`clean_text`.

    ``&#10;`` or ``&#9;`` decode to control characters, which the cleaning turns into spaces.
    """
    if not value:
        return ""
    if count_entities(value, report, where):
        value = decode_entities(value)
    return clean_text(value)


class _TextOnly(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0  # depth inside <script>/<style>

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def strip_html(value: str | None) -> str:
    """Text content of an HTML fragment (tags, scripts and styles removed, references decoded as in
    :func:`text_field`), cleaned. Count the field with :func:`count_entities`."""
    if not value:
        return ""
    if "<" not in value:
        return text_field(value)
    value = _BARE_AMPERSAND.sub("&amp;", value)  # a bare '&' stays itself, never a legacy reference
    parser = _TextOnly()
    parser.feed(value)
    parser.close()
    return clean_text("".join(parser.parts))


def open_binary(path: Path):
    """Open ``path`` for reading bytes, transparently un-gzipping (detected by magic bytes)."""
    path = Path(path)
    if not path.is_file():
        raise PMMRecDataError(f"input file {path} does not exist or is not a file; check the path")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def iter_lines(path: Path, report: Report, encoding: str | None = None, keepends: bool = False) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` for every line of ``path`` (1-based), decoded as UTF-8.

    A line that is not valid UTF-8 is decoded with ``encoding`` (counted as a fallback); without
    ``encoding``, or when that fails too, the error names the file, the line and the option to use.
    A UTF-8 byte-order mark on the first line is dropped.
    """
    with open_binary(path) as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start : err.start + 4]
                if encoding is None:
                    raise PMMRecDataError(
                        f"{path}, line {number}: not valid UTF-8 (bytes {bad!r} at column {err.start}). "
                        f"Pass --encoding with the file's encoding (e.g. --encoding latin-1 or cp1252)."
                    ) from None
                try:
                    line = raw.decode(encoding)
                except (UnicodeDecodeError, LookupError) as err2:
                    raise PMMRecDataError(
                        f"{path}, line {number}: neither valid UTF-8 nor {encoding} ({err2}). "
                        f"Pass the file's real encoding with --encoding."
                    ) from None
                report.fallback(f"text_lines_decoded_as_{encoding}", example=f"{Path(path).name}:{number}")
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield number, (line if keepends else line.rstrip("\r\n"))


def iter_csv(path: Path, report: Report, encoding: str | None = None, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(line_number, row)`` of a CSV file (quoted fields may span lines), decoded like :func:`iter_lines`."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))  # long descriptions
    lines = (line for _, line in iter_lines(path, report, encoding, keepends=True))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as err:
        raise PMMRecDataError(f"{path}, line {reader.line_num}: malformed CSV ({err}); fix or remove that row.") from None


def read_sequences(path: Path, src, report: Report, encoding: str | None = None, quiet: bool = True) -> None:
    """Add ``user \\t item item ...`` lines (each user's items in order) to ``src``.

    Timestamps are positions 0, 1, 2 ... per user, so RecBole's time ordering keeps the given order.
    A user seen again on a later line continues its positions (counted as ``user_repeated_line``).
    """
    from dataset_tools.base import progress

    next_position: dict[str, int] = {}
    for line, text in progress(iter_lines(path, report, encoding), quiet, Path(path).name, unit="line"):
        if not text.strip():
            continue
        user, tab, rest = text.partition("\t")
        items = rest.split()
        if not tab or not user.strip():
            report.bad_input("sequence_malformed_line", f"{path}, line {line}: expected 'user<TAB>item item ...'")
            continue
        if not items:
            report.drop("user_empty_sequence", example=f"{Path(path).name}:{line}")
            continue
        user = user.strip()
        start = next_position.get(user, 0)
        if start:
            report.fallback("user_repeated_line", example=f"{Path(path).name}:{line} user {user}")
        for offset, item in enumerate(items):
            src.add(user, item, float(start + offset))
        next_position[user] = start + len(items)
