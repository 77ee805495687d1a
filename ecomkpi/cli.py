"""The ``ecomkpi`` command: generate data, run the pipeline locally, query KPIs."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from tqdm import tqdm


def _cmd_generate(args: argparse.Namespace) -> int:
    from ecomkpi.generator import GeneratorSettings, generate

    settings = GeneratorSettings(
        days=args.days,
        orders_per_day=args.orders_per_day,
        parts=args.parts,
        seed=args.seed,
        products=args.products,
        start=args.start,
        manifests=args.manifests,
    )
    with tqdm(total=settings.days, desc="generate", unit="day", file=sys.stderr) as bar:
        summary = generate(args.out, settings, progress=lambda done, _total: bar.update(1))
    print(summary.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecomkpi", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write TheLook-shaped CSVs laid out like the bucket's raw/")
    g.add_argument("--out", type=Path, required=True, help="folder to write (products/, orders/DATE/, ...)")
    g.add_argument("--days", type=int, default=3)
    g.add_argument("--orders-per-day", type=int, default=200)
    g.add_argument("--parts", type=int, default=2, help="part files per dataset and day")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--products", type=int, default=400)
    g.add_argument(
        "--start", type=date.fromisoformat, default=date(2025, 7, 10), help="first date (YYYY-MM-DD)"
    )
    g.add_argument("--manifests", action="store_true", help="also write manifests/DATE.json per day")
    g.set_defaults(func=_cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
