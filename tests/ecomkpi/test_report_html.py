"""``report.html`` from a hand-made run report: tables, inline charts, rejected files, escaping.

The page is parsed (``html.parser``) into a small element tree and the tests ask it questions a
reader would (which rows does the executions table have, what does the rejected-file row say), so
they hold whatever the whitespace of the template, and fail if text from the run became markup.
"""

from __future__ import annotations

import base64
import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser
from importlib.resources import files as package_files
from pathlib import Path

import pytest

from ecomkpi.report_html import OPEN_ROWS, category_chart, category_mix, render_report_html, write_report_html
from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS

ROOT = Path(__file__).resolve().parents[2]

DAILY = [
    {
        "date_key": "2025-07-10",
        "total_orders": "300",
        "total_revenue": "31234.50",
        "total_items_sold": "480",
        "return_rate": "9.67",
        "unique_customers": "251",
    },
    {
        "date_key": "2025-07-11",
        "total_orders": "280",
        "total_revenue": "29870.05",
        "total_items_sold": "455",
        "return_rate": "10.00",
        "unique_customers": "240",
    },
]
CATEGORY = [
    {
        "category_id": c,
        "date_key": d,
        "daily_revenue": rev,
        "avg_order_value": "55.10",
        "avg_return_rate": "12.50",
    }
    for d in ("2025-07-11", "2025-07-10")  # out of order on purpose: the page sorts by date, category
    for c, rev in (("Tops & Tees", "3000.25"), ("Jeans", "5000.00"), ("Swim", "1200.00"))
]
REPORT = {
    "started_at": "2025-07-12T08:00:00+00:00",
    "finished_at": "2025-07-12T08:03:10+00:00",
    "endpoint": "http://127.0.0.1:5000",
    "bucket": "ecomkpi-local",
    "files": [
        {
            "key": "raw/orders/2025-07-10/orders_part1.csv",
            "fate": "processed/orders/2025-07-10/orders_part1.csv",
        },
        {
            "key": "raw/order_items/2025-07-11/order_items_<bad>.csv",
            "fate": "invalid/order_items/2025-07-11/order_items_<bad>.csv",
            "report": "invalid/order_items/2025-07-11/order_items_<bad>.csv.report.json",
            "failed_rules": [
                {"rule": "expect_column_values_to_be_between", "column": "sale_price", "failing_rows": 1}
            ],
        },
        {"key": "raw/manifests/2025-07-10.json", "fate": "raw/manifests/2025-07-10.json (manifest)"},
    ],
    "executions": [
        {
            "name": "2025-07-10-g1",
            "batch_id": "2025-07-10",
            "status": "SUCCEEDED",
            "seconds": 42.3,
            "states": ["ValidateBatch", "TransformBatch", "Done"],
            "retries": [],
            "error": None,
            "cause": None,
            "files": 4,
        },
        {
            "name": "2025-07-11-g1",
            "batch_id": "2025-07-11",
            "status": "FAILED",
            "seconds": 12.0,
            "states": ["ValidateBatch", "NotifyFailure", "Failed"],
            "retries": [{"state": "ValidateBatch", "error": "States.TaskFailed", "attempt": 1}],
            "error": "ValidationFailed",
            "cause": "exit code 2: <1 file rejected>",
            "files": 2,
        },
    ],
    "alerts": [{"subject": "ecomkpi pipeline failed: 2025-07-11", "message": "batch 2025-07-11 & co"}],
}


# --------------------------------------------------------------------------- a small element tree


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    children: list[Element | str] = field(default_factory=list)

    def text(self) -> str:
        """The text a reader sees, entities decoded, runs of whitespace folded to one space."""
        raw = "".join(c if isinstance(c, str) else c.text() for c in self.children)
        return " ".join(raw.split())

    def iter(self, tag: str | None = None):
        for c in self.children:
            if isinstance(c, Element):
                if tag is None or c.tag == tag:
                    yield c
                yield from c.iter(tag)

    def find(self, tag: str) -> Element:
        found = next(self.iter(tag), None)
        assert found is not None, f"no <{tag}> under <{self.tag}>"
        return found

    def elements(self) -> list[Element]:
        return [c for c in self.children if isinstance(c, Element)]

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()


class TreeBuilder(HTMLParser):
    """Builds the tree and records tags closed without being open (a cheap well-formedness check)."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack: list[Element] = [self.root]
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if self.stack[-1].tag != tag:
            self.errors.append(f"unexpected </{tag}> with open {[e.tag for e in self.stack[-3:]]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(text: str) -> Element:
    builder = TreeBuilder()
    builder.feed(text)
    builder.close()
    assert builder.errors == [], builder.errors
    assert [e.tag for e in builder.stack] == ["#document"], "elements left open"
    return builder.root


def table_with(doc: Element, headers: tuple[str, ...] | list[str]) -> list[list[Element]]:
    """The body rows (as lists of ``<td>``) of the one table whose header row is ``headers``."""
    tables = [t for t in doc.iter("table") if [th.text() for th in t.iter("th")] == list(headers)]
    assert len(tables) == 1, f"{len(tables)} tables with headers {headers}"
    return [tr.elements() for tr in tables[0].find("tbody").iter("tr")]


def texts(rows: list[list[Element]]) -> list[list[str]]:
    return [[td.text() for td in row] for row in rows]


def section(doc: Element, title: str) -> list[Element]:
    """The elements after ``<h2>title</h2>`` up to the next ``<h2>``."""
    main = doc.find("main")
    siblings = main.elements()
    start = next(i for i, e in enumerate(siblings) if e.tag == "h2" and e.text() == title)
    end = next((i for i, e in enumerate(siblings) if i > start and e.tag == "h2"), len(siblings))
    return siblings[start + 1 : end]


def cards(doc: Element) -> dict[str, Element]:
    return {card.find("span").text(): card.find("b") for card in doc.iter("div") if "card" in card.classes}


# --------------------------------------------------------------------------- the page of REPORT


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, str]:
    path = write_report_html(tmp_path_factory.mktemp("out"), REPORT, DAILY, CATEGORY)
    return path, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def doc(page) -> Element:
    return parse(page[1])


def test_writes_one_self_contained_file(page, doc):
    path, text = page
    assert path.name == "report.html" and path.is_file()
    assert text.startswith("<!DOCTYPE html>")
    assert doc.find("title").text() == "ecomkpi run report"
    assert doc.find("style").text()  # the CSS is inline
    # Self-contained: nothing is fetched when the page opens, and nothing runs.
    for element in doc.iter():
        for name in ("src", "href"):
            assert (element.attrs.get(name) or "data:").startswith("data:"), (element.tag, element.attrs)
    assert not list(doc.iter("script")) and not list(doc.iter("link"))


def test_cards_and_meta_summarise_the_run(doc):
    got = cards(doc)
    assert list(got) == ["run", "executions", "files", "alerts", "KPI days"]
    run = got["run"].find("span")
    assert run.text() == "ATTENTION" and run.classes == ["badge", "bad"]  # one execution failed
    assert got["executions"].text() == "1/2 succeeded"
    assert got["files"].text() == "3 (1 rejected)"
    assert got["alerts"].text() == "1"
    assert got["KPI days"].text() == "2"
    meta = next(p for p in doc.iter("p") if p.classes == ["meta"])
    assert meta.text().split(" · ") == [
        "started: 2025-07-12T08:00:00+00:00",
        "finished: 2025-07-12T08:03:10+00:00",
        "bucket: ecomkpi-local",
        "endpoint: http://127.0.0.1:5000",
    ]


def test_run_card_is_ok_when_every_execution_succeeded():
    report = {"executions": [{"name": "a", "status": "SUCCEEDED"}, {"name": "b", "status": "SUCCEEDED"}]}
    run = cards(parse(render_report_html(report, [], [])))["run"].find("span")
    assert run.text() == "OK" and run.classes == ["badge", "ok"]


def test_daily_kpi_table_has_every_row_and_column(doc):
    rows = table_with(doc, DAILY_KPI_COLUMNS)
    assert texts(rows) == [[r[c] for c in DAILY_KPI_COLUMNS] for r in DAILY]
    # Dates never break; the measures are right-aligned numbers.
    for row in rows:
        assert [td.classes for td in row] == [["id"]] + [["num"]] * (len(DAILY_KPI_COLUMNS) - 1)


def test_category_kpi_table_is_sorted_by_date_then_category(doc):
    rows = table_with(doc, CATEGORY_KPI_COLUMNS)
    expected = sorted(CATEGORY, key=lambda r: (r["date_key"], r["category_id"]))
    assert texts(rows) == [[r[c] for c in CATEGORY_KPI_COLUMNS] for r in expected]
    assert "Tops & Tees" in [row[0].text() for row in rows]
    classes = {c: td.classes for c, td in zip(CATEGORY_KPI_COLUMNS, rows[0], strict=True)}
    assert classes["category_id"] == [] and classes["date_key"] == ["id"]
    assert all(classes[c] == ["num"] for c in CATEGORY_KPI_COLUMNS if c not in ("category_id", "date_key"))
    details = next(d for d in doc.iter("details") if d.find("summary").text() == f"{len(CATEGORY)} rows")
    assert "open" in details.attrs  # short enough to start expanded


def test_long_category_table_starts_collapsed():
    rows = [
        {"category_id": f"c{i:03d}", "date_key": "2025-07-10", "daily_revenue": "1.00"}
        for i in range(OPEN_ROWS + 1)
    ]
    doc = parse(render_report_html({}, [], rows))
    details = next(d for d in doc.iter("details") if d.find("summary").text() == f"{OPEN_ROWS + 1} rows")
    assert "open" not in details.attrs
    assert len(table_with(doc, CATEGORY_KPI_COLUMNS)) == OPEN_ROWS + 1


def test_charts_are_inline_pngs(doc):
    figures = list(doc.iter("figure"))
    images = [f.find("img") for f in figures]
    assert [img.attrs["alt"] for img in images] == ["revenue by date", "category revenue mix"]
    assert [f.find("figcaption").text() for f in figures] == [
        "DailyKPIs: total_revenue and total_orders",
        "CategoryKPIs: daily_revenue summed over the run's dates",
    ]
    for img in images:
        src = img.attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_executions_table(doc):
    headers = ("execution", "batch", "status", "seconds", "files", "states passed", "retries", "error")
    rows = table_with(doc, headers)
    assert texts(rows)[0] == [
        "2025-07-10-g1",
        "2025-07-10",
        "SUCCEEDED",
        "42.3",
        "4",
        "ValidateBatch → TransformBatch → Done",
        "0",
        "",
    ]
    failed = dict(zip(headers, rows[1], strict=True))
    assert [failed[h].text() for h in headers[:6]] == [
        "2025-07-11-g1",
        "2025-07-11",
        "FAILED",
        "12.0",
        "2",
        "ValidateBatch → NotifyFailure → Failed",
    ]
    assert failed["status"].find("span").classes == ["badge", "bad"]
    assert rows[0][2].find("span").classes == ["badge", "ok"]
    assert failed["retries"].text() == "ValidateBatch: States.TaskFailed (attempt 1)"
    assert failed["error"].find("b").text() == "ValidationFailed"
    cause = failed["error"].find("details")
    assert cause.find("summary").text() == "cause"
    assert cause.find("pre").text() == "exit code 2: <1 file rejected>"
    # ids never break; seconds and file counts are right-aligned numbers
    assert [td.classes for td in rows[1][:5]] == [["id"], ["id"], ["id"], ["num"], ["num"]]


def test_several_retries_are_one_line_each():
    retries = [{"state": "T", "error": f"E{i}", "attempt": i} for i in (1, 2)]
    doc = parse(
        render_report_html({"executions": [{"name": "x", "status": "RUNNING", "retries": retries}]}, [], [])
    )
    (row,) = table_with(
        doc, ("execution", "batch", "status", "seconds", "files", "states passed", "retries", "error")
    )
    cell = row[6]
    assert [c.strip() for c in cell.children if isinstance(c, str)] == [
        "T: E1 (attempt 1)",
        "T: E2 (attempt 2)",
    ]
    assert [e.tag for e in cell.elements()] == ["br"]
    assert row[2].find("span").classes == ["badge", "warn"]  # neither succeeded nor failed
    assert row[3].text() == ""  # no duration yet


def test_shows_rejected_file_with_its_rule(doc):
    files = section(doc, "Files")
    counts = next(e for e in files if e.tag == "p")
    assert [(b.text(), b.classes[-1]) for b in counts.iter("span")] == [
        ("1 invalid", "bad"),
        ("1 processed", "ok"),
        ("1 raw", "warn"),
    ]
    assert [e.text() for e in files if e.tag == "h3"] == ["Rejected files"]
    (row,) = table_with(doc, ("file", "failing rules", "report"))
    key, rules, report = row
    assert key.text() == "raw/order_items/2025-07-11/order_items_<bad>.csv"
    assert rules.text() == "expect_column_values_to_be_between on sale_price (1 rows)"
    assert rules.find("code").text() == "expect_column_values_to_be_between"
    assert rules.find("b").text() == "sale_price"
    assert report.find("code").text() == "invalid/order_items/2025-07-11/order_items_<bad>.csv.report.json"


def test_rejected_file_without_a_report_says_so():
    report = {"files": [{"key": "raw/orders/x.csv", "fate": "invalid/orders/x.csv", "failed_rules": []}]}
    (row,) = table_with(parse(render_report_html(report, [], [])), ("file", "failing rules", "report"))
    assert texts([row]) == [["raw/orders/x.csv", "no report found", ""]]
    assert row[1].find("span").classes == ["empty"]


def test_every_file_is_listed_with_its_fate(doc):
    details = next(d for d in doc.iter("details") if d.find("summary").text() == "every file (3)")
    rows = [tr.elements() for tr in details.find("tbody").iter("tr")]
    assert rows == table_with(doc, ("uploaded key", "fate", "where it is now"))
    assert [(r[0].text(), r[1].text(), r[1].find("span").classes, r[2].text()) for r in rows] == [
        (REPORT["files"][0]["key"], "processed", ["badge", "ok"], REPORT["files"][0]["fate"]),
        (REPORT["files"][1]["key"], "invalid", ["badge", "bad"], REPORT["files"][1]["fate"]),
        (REPORT["files"][2]["key"], "raw", ["badge", "warn"], REPORT["files"][2]["fate"]),
    ]


def test_shows_alerts(doc):
    alerts = section(doc, "Alerts")
    assert [(e.tag, e.text()) for e in alerts] == [
        ("p", "ecomkpi pipeline failed: 2025-07-11"),
        ("pre", "batch 2025-07-11 & co"),
    ]
    no_subject = section(parse(render_report_html({"alerts": [{"message": "m"}]}, [], [])), "Alerts")
    assert [e.text() for e in no_subject] == ["(no subject)", "m"]


def test_html_sections_in_reading_order(doc):
    assert [h.text() for h in doc.iter("h2")] == ["KPIs", "Executions", "Files", "Alerts", "CategoryKPIs"]
    assert doc.find("h1").text() == "ecomkpi run report"


def test_empty_run_still_renders():
    doc = parse(render_report_html({}, [], []))
    assert not list(doc.iter("img")) and not list(doc.iter("table"))
    empty = [p.text() for p in doc.iter("p") if p.classes == ["empty"]]
    assert empty == [
        "revenue by date: no data",
        "category revenue mix: no data",
        "no rows",
        "no workflow execution was started",
        "no files were uploaded",
        "no alerts",
        "no rows",
    ]
    got = cards(doc)
    assert got["run"].text() == "ATTENTION" and got["executions"].text() == "0/0 succeeded"
    assert next(p for p in doc.iter("p") if p.classes == ["meta"]).text() == ""


# --------------------------------------------------------------------------- escaping

# Each would change the page if it were emitted as markup: a tag, an attribute-breaking quote, and a
# literal entity (unescaped, a browser would show "AT&T" instead of what the producer wrote).
PAYLOADS = ('<script>alert("x")</script>', 'a&b "q"', "AT&amp;T <img src=x onerror=alert(1)>")

FIELDS = (
    "bucket", "key", "fate", "rule", "column", "rows", "report", "name", "batch", "status", "state",
    "error", "attempt", "cause", "subject", "message", "date", "category",
)  # fmt: skip


def hostile(p: str) -> tuple[dict, list[dict], list[dict], dict[str, str]]:
    """A run whose every producer- or pipeline-given text carries ``p``, and where each should show."""
    v = {name: f"{name} {p}" for name in FIELDS}
    report = {
        "bucket": v["bucket"],
        "files": [
            {
                "key": v["key"],
                "fate": "invalid/" + v["fate"],
                "report": v["report"],
                "failed_rules": [{"rule": v["rule"], "column": v["column"], "failing_rows": v["rows"]}],
            }
        ],
        "executions": [
            {
                "name": v["name"],
                "batch_id": v["batch"],
                "status": v["status"],
                "states": [v["state"]],
                "retries": [{"state": v["state"], "error": v["error"], "attempt": v["attempt"]}],
                "error": v["error"],
                "cause": v["cause"],
            }
        ],
        "alerts": [{"subject": v["subject"], "message": v["message"]}],
    }
    daily = [{"date_key": v["date"], "total_orders": "1", "total_revenue": "2"}]
    category = [{"category_id": v["category"], "date_key": v["date"], "daily_revenue": "2"}]
    return report, daily, category, v


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.filterwarnings("ignore:Tight layout not applied")  # the long category names in the chart
def test_text_from_the_run_is_escaped(payload, doc):
    report, daily, category, v = hostile(payload)
    text = render_report_html(report, daily, category)
    usual_tags = {e.tag for e in doc.iter()}
    doc = parse(text)
    # Nothing from the run became an element or an attribute ...
    assert {e.tag for e in doc.iter()} <= usual_tags
    assert not list(doc.iter("script"))
    assert not [e for e in doc.iter() if any(name.startswith("on") for name in e.attrs)]
    # ... the raw page never holds the payload as written ...
    assert payload not in text
    # ... and a browser shows each value exactly as the run had it, where it belongs.
    meta = next(p for p in doc.iter("p") if p.classes == ["meta"])
    assert meta.text() == f"bucket: {v['bucket']}"
    (rejected,) = texts(table_with(doc, ("file", "failing rules", "report")))
    assert rejected == [v["key"], f"{v['rule']} on {v['column']} ({v['rows']} rows)", v["report"]]
    (every,) = texts(table_with(doc, ("uploaded key", "fate", "where it is now")))
    assert every == [v["key"], "invalid", "invalid/" + v["fate"]]
    (execution,) = texts(
        table_with(
            doc, ("execution", "batch", "status", "seconds", "files", "states passed", "retries", "error")
        )
    )
    assert execution[:3] == [v["name"], v["batch"], v["status"]]
    assert execution[5:7] == [v["state"], f"{v['state']}: {v['error']} (attempt {v['attempt']})"]
    error = table_with(
        doc, ("execution", "batch", "status", "seconds", "files", "states passed", "retries", "error")
    )[0][7]
    assert error.find("b").text() == v["error"]
    assert error.find("pre").text() == v["cause"]
    assert [e.text() for e in section(doc, "Alerts")] == [v["subject"], v["message"]]
    assert texts(table_with(doc, DAILY_KPI_COLUMNS))[0][0] == v["date"]
    assert texts(table_with(doc, CATEGORY_KPI_COLUMNS))[0][:2] == [v["category"], v["date"]]


def test_escaped_forms_in_the_raw_page(page):
    text = page[1]
    assert "order_items_&lt;bad&gt;.csv" in text and "<bad>" not in text
    assert "Tops &amp; Tees" in text
    assert "batch 2025-07-11 &amp; co" in text
    assert "exit code 2: &lt;1 file rejected&gt;" in text
    assert not re.search(r"&(?!(amp|lt|gt|quot|#34|#39|#x27);)", text.split("</style>", 1)[1])


# --------------------------------------------------------------------------- the rest


def test_template_is_package_data():
    """A wheel (not only this work tree) must carry the template: setuptools copies package data only
    when it matches ``[tool.setuptools.package-data]``, and the page needs jinja2 at run time."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = project["tool"]["setuptools"]["package-data"]
    templates = sorted((ROOT / "ecomkpi" / "templates").iterdir())
    assert templates, "no template shipped"
    for path in templates:
        rel = path.relative_to(ROOT / "ecomkpi").as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs.get("ecomkpi", []) + globs.get("*", [])), rel
        assert package_files("ecomkpi").joinpath(rel).is_file()
    assert any(re.match(r"jinja2\b", d, re.I) for d in project["project"]["dependencies"])


def test_category_mix_folds_the_tail():
    rows = [{"category_id": f"c{i:02d}", "daily_revenue": str(100 - i)} for i in range(40)]
    rows.append({"category_id": "c00", "daily_revenue": "1.50"})  # a second date of c00 adds up
    mix = category_mix(rows)
    assert len(mix) == 30
    assert mix[0] == ("c00", Decimal("101.50"))
    assert mix[-1][0] == "other (11)"
    assert sum(v for _, v in mix) == sum(100 - i for i in range(40)) + Decimal("1.50")


@pytest.mark.parametrize("category", ["Sale $\\frac{1}$", "50$ & up $", "$x^{$", "Tools $\\undefined$"])
def test_category_labels_are_plain_text_not_mathtext(category: str) -> None:
    """A category with dollar signs is a producer's text: the chart shows it as written instead of
    failing the report in matplotlib's mathtext parser."""
    rows = [
        {"category_id": category, "daily_revenue": "10.00"},
        {"category_id": "Jeans", "daily_revenue": "5"},
    ]
    png = category_chart(rows)
    assert png is not None and base64.b64decode(png).startswith(b"\x89PNG")
