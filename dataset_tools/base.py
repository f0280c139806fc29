"""What every format reader produces, and the bookkeeping shared by all converters.

A reader turns its input into a :class:`SourceDataset` (items with text and an optional image
reference, interactions as parallel lists) and counts everything it drops or repairs in a
:class:`Report`. ``writer.write_dataset`` filters, validates images and writes the atomic files.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

from recbole_pmmrec.errors import PMMRecDataError

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_EXAMPLES = 5  # examples kept per reason for the log and meta.json
BAD_TIMESTAMP = "interaction_bad_timestamp"  # the drop reason of every reader, and of the writer's last check
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class Report:
    """Counts of dropped rows / images (``dropped``) and repairs (``fallbacks``), with a few examples.

    ``strict`` turns every call of :meth:`bad_input` into an error instead of a counted drop.
    """

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.dropped: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)

    def _example(self, reason: str, example: str | None) -> None:
        if example is not None and len(self.examples[reason]) < MAX_EXAMPLES:
            self.examples[reason].append(example)

    def drop(self, reason: str, n: int = 1, example: str | None = None) -> None:
        """Count ``n`` things dropped for ``reason`` (e.g. ``image_corrupt``)."""
        if n:
            self.dropped[reason] += n
            self._example(reason, example)

    def fallback(self, reason: str, n: int = 1, example: str | None = None) -> None:
        """Count ``n`` repairs for ``reason`` (e.g. ``text_decoded_as_latin-1``)."""
        if n:
            self.fallbacks[reason] += n
            self._example(reason, example)

    def bad_input(self, reason: str, message: str, n: int = 1) -> None:
        """Malformed input: an error with ``--strict``, else a counted drop."""
        if self.strict:
            raise PMMRecDataError(f"{message} (--strict is set; drop --strict to skip and count such rows)")
        self.drop(reason, n, example=message)

    def log_summary(self) -> None:
        """Log every reason once, with its count and first examples."""
        for kind, counts in (("dropped", self.dropped), ("fallback", self.fallbacks)):
            for reason, n in sorted(counts.items()):
                shown = "; ".join(self.examples.get(reason, [])[:3])
                logger.warning("%s %s: %d%s", kind, reason, n, f" (e.g. {shown})" if shown else "")


@dataclass
class ItemRecord:
    """One item of the source: its text fields (already cleaned) and where its image comes from."""

    text: dict[str, str]
    image: "ImageRef | None" = None  # noqa: F821  (dataset_tools.images.ImageRef)

    def has_text(self) -> bool:
        return any(self.text.values())


@dataclass
class SourceDataset:
    """A format reader's output, before filtering.

    ``items`` keeps the source order (first row wins for duplicates); interactions are three parallel
    lists: user token, item token, timestamp (seconds, or the position in an ordered sequence).
    """

    format: str
    text_fields: list[str]
    source: dict
    items: dict[str, ItemRecord] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    kcore: int = 0
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def add(self, user: str, item: str, time: float) -> None:
        self.users.append(user)
        self.item_ids.append(item)
        self.times.append(time)

    def close(self) -> None:
        while self.cleanup:
            self.cleanup.pop()()


def parse_timestamp(value) -> float | None:
    """A finite number from a text cell or a JSON value; ``None`` for anything else.

    ``None`` for: a missing or empty value, ``nan``, ``inf``, a number that overflows to infinity
    (``1e400``), a boolean, text that is not a plain decimal number (``1_000``, ``0x10``, ``12 May``).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            return None
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value)
    else:
        return None
    return number if math.isfinite(number) else None


def progress(iterable: Iterable[T], quiet: bool, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A tqdm bar on stderr, shown only on a terminal and without ``--quiet``."""
    from tqdm import tqdm

    disable = quiet or not sys.stderr.isatty()
    return iter(tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=False))
