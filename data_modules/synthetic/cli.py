"""``fasvlm synth``: generate synthetic FAS data in the official dataset layouts."""

from __future__ import annotations

import argparse
import sys

from .presets import PRESETS

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fasvlm synth",
        description="Generate synthetic face anti-spoofing data (procedural faces, simulated attacks) written in the "
        "official layouts of CelebA-Spoof, Replay-Attack and OULU-NPU.",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (created; what an earlier `fasvlm synth` wrote there is replaced, anything else is refused)"
    )
    p.add_argument(
        "--preset",
        default="quickstart",
        choices=list(PRESETS),
        help="how much to generate: " + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()),
    )
    p.add_argument("--seed", type=int, default=0, help="same seed -> byte-identical files (default 0)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the summary line stays)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print("fasvlm synth: --workers must be >= 1", file=sys.stderr)
        return 2
    from .runner import ForeignDataError, generate

    try:
        generate(args.out, preset=args.preset, seed=args.seed, workers=args.workers, progress=not args.no_progress)
    except ForeignDataError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
