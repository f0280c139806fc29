"""Command line: ``python -m dataset_tools.convert FORMAT --output DIR [--name NAME] [--force] ...``.

Writes ``DIR/NAME/NAME.inter``, ``NAME.item``, ``NAME.images/`` and ``NAME.meta.json``
(see ``dataset_tools/README.md``). ``python -m dataset_tools.convert FORMAT --help`` lists the
options of one format.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from PIL import Image

from recbole_pmmrec.errors import PMMRecError

from dataset_tools import amazon2018, merge, microlens, movielens_posters, pmmrec, tsv
from dataset_tools.base import Report
from dataset_tools.images import ImageLimits
from dataset_tools.writer import TIE_ORDERS, WriteOptions, check_name, check_output, write_dataset

EXIT_INPUT_ERROR = 2  # bad input or options, as argparse and the package CLI (recbole_pmmrec.cli) exit
FORMATS = {m.FORMAT: m for m in (movielens_posters, microlens, pmmrec, amazon2018, tsv, merge)}
logger = logging.getLogger("dataset_tools")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, required=True, help="folder that receives NAME/ (created if missing)")
    parser.add_argument("--name", default=None, help="dataset name: the folder and file prefix")
    parser.add_argument("--force", action="store_true", help="replace an existing non-empty NAME/ folder")
    parser.add_argument("--strict", action="store_true", help="fail on malformed lines and unknown items instead of dropping them")
    parser.add_argument("--encoding", default=None, help="fallback encoding for lines that are not UTF-8 (e.g. latin-1)")
    parser.add_argument("--unsafe-tokens", choices=["encode", "error"], default="encode",
                        help="ids that are not safe file names: percent-encode them (default) or stop")
    parser.add_argument("--max-pixels", type=int, default=Image.MAX_IMAGE_PIXELS, help="refuse larger images (default: Pillow's limit)")
    parser.add_argument("--max-image-bytes", type=int, default=64 << 20, help="refuse larger image files (default 64 MiB)")
    parser.add_argument("--jpeg-quality", type=int, default=95, help="quality of re-encoded images (default 95)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("--ties", choices=TIE_ORDERS, default="auto",
                        help="order of a user's rows with the same timestamp: keep the file order, hash (user, item), or "
                             "auto (default): hash only when the file order follows the item ids")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataset_tools.convert",
        description="Convert raw recommendation data into RecBole atomic files (NAME.inter, NAME.item) plus "
        "NAME.images/ and NAME.meta.json under OUTPUT/NAME/. 'FORMAT --help' lists a format's options.",
    )
    sub = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, module in FORMATS.items():
        summary = module.__doc__.strip().splitlines()[0].split(": ", 1)[-1]
        fmt = sub.add_parser(name, help=summary, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_common(fmt)
        module.add_arguments(fmt)
    return parser


def _default_name(args: argparse.Namespace) -> str:
    module = FORMATS[args.format]
    if module.DEFAULT_NAME:
        return module.DEFAULT_NAME
    if args.format == "amazon2018":
        return amazon2018.default_name(args.reviews)
    if args.format == "tsv":
        return tsv.default_name(args.input)
    base = Path(args.input).resolve().name if args.input else re.sub(r"_users$", "", Path(args.behaviors).stem)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip(".-") or "pmmrec-dataset"


def _options(args: argparse.Namespace) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())}


def run(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, convert, and return the meta dictionary. Raises ``PMMRecError`` on bad input."""
    args = build_parser().parse_args(argv)
    if not 1 <= args.jpeg_quality <= 100 or args.max_pixels <= 0 or args.max_image_bytes <= 0:
        raise PMMRecError("--jpeg-quality must be in 1..100, --max-pixels and --max-image-bytes positive")
    args.name = args.name or _default_name(args)
    check_name(args.name)
    check_output(Path(args.output) / args.name, args.force)  # fail before reading anything
    report = Report(strict=args.strict)
    started = time.time()
    src = FORMATS[args.format].read(args, report)
    try:
        opts = WriteOptions(
            force=args.force, quiet=args.quiet, unsafe_tokens=args.unsafe_tokens, options=_options(args), started=started,
            ties=args.ties,
            limits=ImageLimits(max_pixels=args.max_pixels, max_bytes=args.max_image_bytes, jpeg_quality=args.jpeg_quality),
        )
        meta = write_dataset(src, report, Path(args.output), args.name, opts)
    finally:
        src.close()
    report.log_summary()
    return meta


def summary(meta: dict, output: Path) -> str:
    c = meta["counts"]
    lines = [
        f"wrote {output / meta['name']} ({meta['format']}) in {meta['wall_time_s']:.1f} s: "
        f"{c['users']} users, {c['items']} items, {c['interactions']} interactions, {c['images']} images "
        f"({c['items_without_image']} items without image, {c['items_without_text']} without text)"
    ]
    ties = meta.get("ties")
    if ties and ties["tied_pairs"]:
        lines.append(f"ties: {ties['tied_pairs']} pairs of a user's rows share a timestamp; "
                     + ("ordered by a hash of (user, item)" if ties["applied"] == "hash" else "file order kept")
                     + f" (--ties {ties['option']}; one-way share in the items' order "
                     + f"{max(ties['one_way_share'].values()):.2f})")
    if meta["dropped"]:
        lines.append("dropped: " + ", ".join(f"{k}={v}" for k, v in meta["dropped"].items()))
    if meta["fallbacks"]:
        lines.append("fallbacks: " + ", ".join(f"{k}={v}" for k, v in meta["fallbacks"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet = "--quiet" in argv
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        meta = run(argv)
    except PMMRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("interrupted: nothing was written under the final name", file=sys.stderr)
        return 130
    output = Path(meta["options"]["output"])
    print(summary(meta, output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
