"""A deterministic generator of TheLook-shaped shop data, laid out like the bucket's ``raw/``.

Test data stays small and generated; the same generator makes the millions of rows the
benchmarks need, streaming rows to disk so memory stays flat whatever the size.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from jobs.contract import COLUMNS, ORDER_ITEMS, ORDERS, PRODUCTS

CATEGORIES = (
    "Accessories", "Active", "Blazers & Jackets", "Clothing Sets", "Dresses",
    "Fashion Hoodies & Sweatshirts", "Intimates", "Jeans", "Jumpsuits & Rompers", "Leggings",
    "Maternity", "Outerwear & Coats", "Pants", "Plus", "Shorts", "Skirts", "Sleep & Lounge",
    "Socks", "Suits & Sport Coats", "Sweaters", "Swim", "Tops & Tees", "Underwear",
)  # fmt: skip
BRANDS = (
    "Allegra K",
    "Calvin Klein",
    "Carhartt",
    "Columbia",
    "Diesel",
    "Hanes",
    "Levi's",
    "Nike",
    "Quiksilver",
)
STATUSES = ("Complete", "Shipped", "Processing", "Cancelled", "Returned")
STATUS_WEIGHTS = (0.25, 0.3, 0.2, 0.15, 0.1)
ITEMS_PER_ORDER = (1, 2, 3, 4)
ITEMS_WEIGHTS = (0.55, 0.3, 0.1, 0.05)


@dataclass(frozen=True)
class GeneratorSettings:
    days: int = 3
    orders_per_day: int = 200
    parts: int = 2
    seed: int = 42
    products: int = 400
    start: date = date(2025, 7, 10)
    evening_before_share: float = 0.08  # orders created the evening before their folder date
    offset_notation_share: float = 0.05  # orders written with a +HH:MM offset instead of UTC
    manifests: bool = False


@dataclass
class GeneratedSummary:
    out: Path
    products: int = 0
    orders: int = 0
    order_items: int = 0
    files: int = 0

    def describe(self) -> str:
        return (
            f"{self.files} files in {self.out}: {self.products} products, {self.orders} orders, "
            f"{self.order_items} order items"
        )


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def _with_offset(ts: datetime, hours: int) -> str:
    """The same instant written in local time with an explicit offset (another producer's style)."""
    local = ts + timedelta(hours=hours)
    sign = "+" if hours >= 0 else "-"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{abs(hours):02d}:00"


def make_products(rng: random.Random, n: int) -> list[list[str]]:
    rows = []
    for pid in range(1, n + 1):
        category = (
            CATEGORIES[(pid - 1) % len(CATEGORIES)] if pid <= len(CATEGORIES) else rng.choice(CATEGORIES)
        )
        retail = round(rng.uniform(5, 250), 2)
        cost = round(retail * rng.uniform(0.3, 0.6), 2)
        brand = rng.choice(BRANDS)
        rows.append(
            [
                str(pid), f"{cost:.2f}", category, f"{brand} {category} #{pid}", brand, f"{retail:.2f}",
                rng.choice(("Women", "Men")), f"SKU{pid:08d}", str(rng.randint(1, 10)),
            ]
        )  # fmt: skip
    return rows


class _PartWriters:
    """One open CSV writer per part file of a day; closed when the day is done."""

    def __init__(self, folder: Path, stem: str, header: tuple[str, ...], parts: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # Files stay open across a whole day of rows; close() ends them.
        self.handles = [
            open(folder / f"{stem}_part{i + 1}.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
            for i in range(parts)
        ]
        self.writers = [csv.writer(h, lineterminator="\n") for h in self.handles]
        for w in self.writers:
            w.writerow(header)

    def close(self) -> None:
        for h in self.handles:
            h.close()


def generate(
    out: Path | str,
    settings: GeneratorSettings = GeneratorSettings(),
    progress: Callable[[int, int], None] | None = None,
) -> GeneratedSummary:
    """Write ``products/``, ``orders/DATE/`` and ``order_items/DATE/`` under ``out``."""
    out = Path(out)
    rng = random.Random(settings.seed)
    summary = GeneratedSummary(out=out)

    products = make_products(rng, settings.products)
    (out / PRODUCTS).mkdir(parents=True, exist_ok=True)
    with open(out / PRODUCTS / "products.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS[PRODUCTS])
        w.writerows(products)
    summary.products, summary.files = len(products), 1
    prices = [float(p[5]) for p in products]

    # A customer pool smaller than the order count gives repeat customers; the square biases
    # choices toward low ids, so some customers order often.
    pool = max(10, int(settings.days * settings.orders_per_day * 0.6))
    order_id = 0
    item_id = 0
    for day_index in range(settings.days):
        day = settings.start + timedelta(days=day_index)
        folder = day.isoformat()
        orders_w = _PartWriters(out / ORDERS / folder, "orders", COLUMNS[ORDERS], settings.parts)
        items_w = _PartWriters(
            out / ORDER_ITEMS / folder, "order_items", COLUMNS[ORDER_ITEMS], settings.parts
        )
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for n in range(settings.orders_per_day):
            order_id += 1
            part = n * settings.parts // settings.orders_per_day
            if rng.random() < settings.evening_before_share:
                created = midnight - timedelta(seconds=rng.randint(1, 4 * 3600))
            else:
                created = midnight + timedelta(seconds=rng.randint(0, 86399))
            status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
            user = 1 + int(pool * rng.random() ** 2)
            count = rng.choices(ITEMS_PER_ORDER, ITEMS_WEIGHTS)[0]
            shipped = created + timedelta(hours=rng.randint(6, 72)) if status != "Processing" else None
            delivered = (
                shipped + timedelta(days=rng.randint(1, 5))
                if shipped and status in ("Complete", "Returned")
                else None
            )
            returned = (
                delivered + timedelta(days=rng.randint(1, 20)) if delivered and status == "Returned" else None
            )
            created_text = (
                _with_offset(created, rng.choice((-5, 2, 9)))
                if rng.random() < settings.offset_notation_share
                else _fmt(created)
            )
            gender = rng.choice(("F", "M"))
            orders_w.writers[part].writerow(
                [
                    order_id, user, status, gender, created_text,
                    _fmt(returned) if returned else "", _fmt(shipped) if shipped else "",
                    _fmt(delivered) if delivered else "", count,
                ]
            )  # fmt: skip
            for _ in range(count):
                item_id += 1
                pidx = rng.randrange(len(products))
                items_w.writers[part].writerow(
                    [
                        item_id, order_id, user, pidx + 1, item_id + 100000, status, _fmt(created),
                        _fmt(shipped) if shipped else "", _fmt(delivered) if delivered else "",
                        _fmt(returned) if returned else "", f"{prices[pidx]:.2f}",
                    ]
                )  # fmt: skip
            summary.order_items += count
        summary.orders += settings.orders_per_day
        orders_w.close()
        items_w.close()
        summary.files += 2 * settings.parts
        if settings.manifests:
            _write_manifest(out, folder, settings.parts)
            summary.files += 1
        if progress:
            progress(day_index + 1, settings.days)
    return summary


def _write_manifest(out: Path, folder: str, parts: int) -> None:
    keys = [f"raw/{ORDERS}/{folder}/orders_part{i + 1}.csv" for i in range(parts)]
    keys += [f"raw/{ORDER_ITEMS}/{folder}/order_items_part{i + 1}.csv" for i in range(parts)]
    (out / "manifests").mkdir(parents=True, exist_ok=True)
    (out / "manifests" / f"{folder}.json").write_text(
        json.dumps({"batch_id": folder, "expected_keys": keys}, indent=2) + "\n", encoding="utf-8"
    )


def iter_data_files(folder: Path | str) -> Iterator[tuple[str, Path]]:
    """(relative key, path) of every file of a raw-shaped folder: products, manifests, then data by date.

    Manifests go before the day's files, as the trigger's contract asks (lambda_trigger/README.md):
    a manifest that arrives after the first orders and items files cannot hold the day back.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))

    def order(p: Path) -> tuple[int, str]:
        rel = p.relative_to(folder).as_posix()
        rank = 0 if rel.startswith(PRODUCTS + "/") else 1 if rel.startswith("manifests/") else 2
        return (rank, rel)

    for p in sorted(files, key=order):
        yield p.relative_to(folder).as_posix(), p
