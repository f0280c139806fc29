"""Command line of ``run_recbole_pmmrec.py`` (also installed as ``recbole-pmmrec``)."""

from __future__ import annotations

import argparse
import json
import sys

from recbole_pmmrec.errors import PMMRecError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train and evaluate PMMRec or any RecBole model. Any other --key=value is a config override.")
    parser.add_argument("--model", "-m", default="PMMRec", help="PMMRec or a RecBole model name (SASRec, GRU4Rec, ...)")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (atomic files under data_path/NAME/)")
    parser.add_argument("--config_files", default=None, help="space-separated yaml files, later ones win")
    parser.add_argument("--resume", default=None, metavar="PATH",
                        help="continue a killed run from its checkpoint_dir/NAME.latest.pth (the file must lie inside "
                             "checkpoint_dir; same as --resume_checkpoint=PATH)")
    parser.add_argument("--nproc", type=int, default=None,
                        help="train with N processes on this machine (torch.distributed: gloo on CPU, nccl on GPU); "
                             "train_batch_size stays the global batch")
    return parser


# Options handled here and kept away from RecBole's own --key=value parsing.
_OWN_OPTIONS = ("--resume", "--nproc")


def _without_own_options(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _OWN_OPTIONS:  # "--resume PATH"
            skip = True
            continue
        if arg.split("=", 1)[0] in _OWN_OPTIONS:
            continue
        out.append(arg)
    return out


def _repeated_keys(argv: list[str]) -> list[str]:
    """``--key=value`` options given twice with different values (RecBole raises a bare SyntaxError)."""
    seen, repeated = {}, []
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            if key in seen and seen[key] != value:
                repeated.append(f"--{key} ({seen[key]!r} and {value!r})")
            seen[key] = value
    return repeated


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    repeated = _repeated_keys(list(argv))
    if repeated:
        print(f"error: given twice with different values: {', '.join(repeated)}; keep one", file=sys.stderr)
        raise SystemExit(2)
    args, _ = build_parser().parse_known_args(argv)
    config_files = args.config_files.strip().split(" ") if args.config_files else None
    # RecBole's Config reads the remaining --key=value pairs from sys.argv itself.
    sys.argv = [sys.argv[0]] + _without_own_options(list(argv))
    config_dict = {"resume_checkpoint": args.resume} if args.resume else None
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    try:
        result = run_recbole_pmmrec(model=args.model, dataset=args.dataset, config_file_list=config_files,
                                    config_dict=config_dict, nproc=args.nproc)
    except PMMRecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    summary = {k: result[k] for k in ("best_valid_result", "test_result")}
    print("\n" + json.dumps({"model": args.model, "dataset": args.dataset, **summary}, indent=2))
    return result


if __name__ == "__main__":
    main()
