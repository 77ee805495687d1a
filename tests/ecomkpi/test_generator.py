"""The generator makes realistic, deterministic, raw/-shaped data (no Spark needed)."""

from __future__ import annotations

import csv
import filecmp
from collections import Counter, defaultdict
from pathlib import Path

from ecomkpi.cli import main
from ecomkpi.generator import GeneratorSettings, generate, iter_data_files
from jobs.contract import COLUMNS


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_layout_columns_and_determinism(tmp_path):
    a = generate(tmp_path / "a", GeneratorSettings(days=2, orders_per_day=60, parts=3, seed=7))
    generate(tmp_path / "b", GeneratorSettings(days=2, orders_per_day=60, parts=3, seed=7))
    rels = [rel for rel, _ in iter_data_files(tmp_path / "a")]
    assert rels[0] == "products/products.csv"
    assert "orders/2025-07-11/orders_part3.csv" in rels
    assert "order_items/2025-07-10/order_items_part1.csv" in rels
    assert len(rels) == a.files == 1 + 2 * 2 * 3
    for rel, path in iter_data_files(tmp_path / "a"):
        assert filecmp.cmp(path, tmp_path / "b" / rel, shallow=False), f"{rel} differs for the same seed"
        dataset = rel.split("/")[0]
        with open(path, encoding="utf-8") as fh:
            assert tuple(fh.readline().strip().split(",")) == COLUMNS[dataset]
    generate(tmp_path / "c", GeneratorSettings(days=2, orders_per_day=60, parts=3, seed=8))
    assert not filecmp.cmp(
        tmp_path / "a/orders/2025-07-10/orders_part1.csv",
        tmp_path / "c/orders/2025-07-10/orders_part1.csv",
        shallow=False,
    )


def test_data_has_the_shapes_the_kpis_need(tmp_path):
    generate(tmp_path, GeneratorSettings(days=3, orders_per_day=300, parts=2, seed=1))
    orders = [r for p in sorted(tmp_path.glob("orders/*/*.csv")) for r in read(p)]
    items = [r for p in sorted(tmp_path.glob("order_items/*/*.csv")) for r in read(p)]
    products = {r["id"]: r["category"] for r in read(tmp_path / "products/products.csv")}

    assert {r["status"] for r in orders} == {"Complete", "Shipped", "Processing", "Cancelled", "Returned"}
    assert len({r["order_id"] for r in orders}) == len(orders) == 900
    # Repeat customers.
    assert max(Counter(r["user_id"] for r in orders).values()) > 1
    # Multi-item orders spanning several categories.
    cats = defaultdict(set)
    for it in items:
        cats[it["order_id"]].add(products[it["product_id"]])
    assert any(len(c) > 1 for c in cats.values())
    # Some orders were created the evening before their folder date.
    folder_of = {r["order_id"]: p.parent.name for p in tmp_path.glob("orders/*/*.csv") for r in read(p)}
    early = [r for r in orders if r["created_at"][:10] < folder_of[r["order_id"]]]
    assert early
    # Every item belongs to an order, and returned orders carry returned_at.
    assert {it["order_id"] for it in items} <= set(folder_of)
    assert all(r["returned_at"] for r in orders if r["status"] == "Returned")


def test_manifests_are_listed_before_the_days_files(tmp_path):
    generate(tmp_path, GeneratorSettings(days=2, orders_per_day=5, parts=2, seed=1, manifests=True))
    rels = [rel for rel, _ in iter_data_files(tmp_path)]
    assert rels[:3] == ["products/products.csv", "manifests/2025-07-10.json", "manifests/2025-07-11.json"]
    assert len(rels) == 3 + 2 * 2 * 2


def test_cli_generate_with_manifests(tmp_path, capsys):
    assert (
        main(["generate", "--out", str(tmp_path), "--days", "1", "--orders-per-day", "5", "--manifests"]) == 0
    )
    assert "5 orders" in capsys.readouterr().out
    manifest = (tmp_path / "manifests/2025-07-10.json").read_text()
    assert "raw/orders/2025-07-10/orders_part1.csv" in manifest
