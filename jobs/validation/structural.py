"""Cheap byte-level checks on the head of an object, before any Spark work.

Most broken uploads (empty, binary, compressed, UTF-16, JSON named .csv, no header, duplicate
header names) are recognisable from the first 64 KiB. Deciding them here gives a precise message
and saves a Spark read that would only produce garbage rows. The same head also yields the header,
which becomes the file's all-string read schema (no inference).

Everything here is a pure function of bytes, so each kind of breakage is unit-tested without S3 or
Spark; what only a full pass can see (a ragged row or a bad byte after the head) is checked in
``reading``.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

from jobs.contract import COLUMNS
from jobs.normalize import normalize_header
from jobs.validation.findings import Finding, structural

HEAD_BYTES = 64 * 1024
# Larger objects are rejected unread: one task must not spend its memory and hours on one upload
# (S3 takes at most 5 GiB in one PUT; a producer's day part is far smaller). MAX_FILE_BYTES overrides.
DEFAULT_MAX_FILE_BYTES = 5 * 1024**3
UTF8_BOM = codecs.BOM_UTF8
# Spark's CSV reader (univocity) holds at most this many fields per record (its ``maxColumns``): one
# record with more fails the whole read, so the file is rejected by this rule instead.
MAX_FIELDS = 20_480

# Rule names shared by reports, the README table and the tests.
RULE_NOT_EMPTY = "file is not empty"
RULE_SIZE = "file is at most MAX_FILE_BYTES"
RULE_TEXT = "file is text, not binary"
RULE_UTF8 = "file is UTF-8 text"
RULE_NOT_JSON = "file is CSV, not JSON"
RULE_HEADER = "file starts with a header row"
RULE_HEADER_NAMED = "every header column has a name"
RULE_HEADER_UNIQUE = "header names are unique"
RULE_HEADER_PLAIN = "header names contain no backtick"
RULE_FIELDS = "rows have as many fields as the header"
RULE_MAX_FIELDS = f"rows have at most {MAX_FIELDS:,} fields"
RULE_ONE_LINE = "one record per line"
RULE_WELL_FORMED = "file is well-formed CSV"

# Signatures of formats producers upload by mistake; named so the report says what the file is.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"PK\x03\x04", "a ZIP archive (or an Excel .xlsx workbook)"),
    (b"PAR1", "a Parquet file"),
    (b"\xd0\xcf\x11\xe0", "an old Excel/OLE document"),
    (b"%PDF", "a PDF document"),
    (b"BZh", "bzip2-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (codecs.BOM_UTF16_LE, "UTF-16 text (little endian)"),
    (codecs.BOM_UTF16_BE, "UTF-16 text (big endian)"),
)


@dataclass(frozen=True)
class HeadInspection:
    """What the head of a file says: its normalised header, or why it can never pass."""

    columns: tuple[str, ...] = ()  # normalised header names, in file order
    raw_header: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def readable(self) -> bool:
        """False when Spark must not even try: the file is not the contract's CSV at all."""
        return not any(f.rejects for f in self.findings)


def _hexdump(data: bytes) -> str:
    return data.hex(" ")


def _decode_head(head: bytes, complete: bool) -> tuple[str | None, Finding | None]:
    """Strict UTF-8 (BOM stripped); a multi-byte character cut by the 64 KiB boundary is not an error."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    body = head[len(UTF8_BOM) :] if head.startswith(UTF8_BOM) else head
    try:
        return decoder.decode(body, final=complete), None
    except UnicodeDecodeError as exc:
        offset = exc.start + (len(head) - len(body))
        line = body[: exc.start].count(b"\n") + 1
        bad = body[exc.start : exc.start + 8]
        return None, structural(
            RULE_UTF8,
            f"byte {offset} (line {line}) is not valid UTF-8: {exc.reason}; re-export the file as UTF-8",
            samples=[f"line {line}, byte {offset}: {_hexdump(bad)}"],
        )


def _binary(head: bytes) -> Finding | None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return structural(
                RULE_TEXT, f"the file is {what}, not a CSV text file", samples=[_hexdump(head[:16])]
            )
    nul = head.find(b"\x00")
    if nul >= 0:
        return structural(
            RULE_TEXT,
            f"the file contains NUL bytes (first at byte {nul}): binary content, not CSV text",
            samples=[_hexdump(head[max(0, nul - 8) : nul + 8])],
        )
    return None


def _complete_lines(text: str, complete: bool) -> str:
    """Drop a last line the 64 KiB cut may have truncated; a partial row would look ragged."""
    if complete:
        return text
    cut = max(text.rfind("\n"), text.rfind("\r"))
    return text[: cut + 1] if cut >= 0 else ""


def inspect_head(
    head: bytes, size: int, dataset: str | None = None, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> HeadInspection:
    """Check the first bytes of an object of ``size`` bytes; ``head`` is at most ``HEAD_BYTES`` of it.

    ``dataset`` lets a first line that names none of the dataset's columns be reported as a
    missing header rather than as every required column missing at once.
    """
    if size == 0 or not head:
        return HeadInspection(findings=(structural(RULE_NOT_EMPTY, "the object has 0 bytes"),))
    if size > max_bytes:
        return HeadInspection(
            findings=(
                structural(
                    RULE_SIZE,
                    f"the object has {size:,} bytes, more than the limit of {max_bytes:,} "
                    "(MAX_FILE_BYTES); split the day into several parts",
                ),
            )
        )
    binary = _binary(head)
    if binary:
        return HeadInspection(findings=(binary,))
    complete = size <= len(head)
    text, undecodable = _decode_head(head, complete)
    if undecodable or text is None:
        return HeadInspection(findings=(undecodable,) if undecodable else ())
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        return HeadInspection(
            findings=(
                structural(
                    RULE_NOT_JSON,
                    f"the content is JSON (it starts with {stripped[:1]!r}), not comma-separated values",
                    samples=[stripped[:80]],
                ),
            )
        )
    first_line = text.splitlines()[0] if text else ""
    if not first_line.strip():
        return HeadInspection(
            findings=(structural(RULE_HEADER, "the first line is empty; a CSV header row must come first"),)
        )
    too_wide = _too_wide(text)
    if too_wide:
        return HeadInspection(findings=(too_wide,))
    body = _complete_lines(text, complete)
    if not body:
        return HeadInspection(
            findings=(
                structural(
                    RULE_HEADER,
                    f"no line break in the first {len(head)} bytes: "
                    "the header row is missing or absurdly long",
                ),
            )
        )
    scope = "in the file" if complete else f"in the first {HEAD_BYTES // 1024} KiB"
    return _inspect_csv(body, dataset, scope)


def too_many_fields(fields: int, line: str) -> Finding:
    return structural(
        RULE_MAX_FIELDS,
        f"{line} has {fields:,} fields or more, above the {MAX_FIELDS:,} the CSV reader holds per record",
        failing_rows=1,
        samples=[f"{line}: {fields:,} fields"],
    )


def _too_wide(text: str) -> Finding | None:
    """The first line of the head, even one the 64 KiB cut, with more fields than the reader holds."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.count(",") < MAX_FIELDS:  # fewer separators: fewer fields, whatever the quoting
            continue
        try:
            fields = len(next(csv.reader([line], delimiter=",", quotechar='"', doublequote=True)))
        except csv.Error:  # a quoted field the cut ends in: its separators may be quoted
            continue
        if fields > MAX_FIELDS:
            return too_many_fields(fields, "the header" if number == 1 else f"line {number}")
    return None


def _inspect_csv(body: str, dataset: str | None, scope: str) -> HeadInspection:
    """Parse the complete lines of the head with the csv module (same quoting as the Spark read)."""
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=",", quotechar='"', doublequote=True)
    try:
        raw_header = tuple(next(reader))
    except (csv.Error, StopIteration) as exc:
        return HeadInspection(
            findings=(structural(RULE_WELL_FORMED, f"the header row cannot be parsed: {exc}"),)
        )
    columns = tuple(normalize_header(c) for c in raw_header)
    if dataset in COLUMNS and not set(columns) & set(COLUMNS[dataset]):
        # Checked first: a data row taken for a header also has "duplicate" and "unnamed" columns.
        return HeadInspection(
            columns=columns,
            raw_header=raw_header,
            findings=(
                structural(
                    RULE_HEADER,
                    f"the first line names none of the {dataset} columns "
                    f"({', '.join(COLUMNS[dataset][:4])}, ...): the header row is missing",
                    samples=[",".join(raw_header)],
                ),
            ),
        )
    findings: list[Finding] = []
    unnamed = [str(i + 1) for i, c in enumerate(columns) if not c]
    if unnamed:
        findings.append(
            structural(
                RULE_HEADER_NAMED,
                f"header column(s) at position {', '.join(unnamed)} have no name",
                samples=[",".join(raw_header)],
            )
        )
    quoted = [r for r in raw_header if "`" in r]
    if quoted:  # Spark column references quote names with backticks; no contract column has one
        findings.append(
            structural(RULE_HEADER_PLAIN, f"{len(quoted)} header name(s) contain a backtick", samples=quoted)
        )
    for name, count in Counter(c for c in columns if c).items():
        if count > 1:
            originals = [r for r, c in zip(raw_header, columns, strict=True) if c == name]
            findings.append(
                structural(
                    RULE_HEADER_UNIQUE,
                    f"column {name!r} appears {count} times in the header "
                    "(names match case-insensitively after trimming)",
                    column=name,
                    samples=originals,
                )
            )
    if findings:
        return HeadInspection(columns=columns, raw_header=raw_header, findings=tuple(findings))
    findings.extend(_row_shape(reader, len(columns), scope))
    return HeadInspection(columns=columns, raw_header=raw_header, findings=tuple(findings))


def _row_shape(reader: Any, width: int, scope: str) -> list[Finding]:
    """Ragged rows and quoted line breaks within the head (the full file is checked again by Spark).

    Records are read one line each, like Spark's splittable CSV read (``multiLine`` off): a quoted
    field spanning lines would be split there, so it is a rejection with its own message here.
    """
    ragged: list[str] = []
    ragged_count = 0
    multiline: list[str] = []
    previous_line = reader.line_num
    try:
        for record in reader:
            lines = reader.line_num - previous_line
            start = previous_line + 1
            previous_line = reader.line_num
            if not record:  # blank line: skipped by Spark too
                continue
            if lines > 1:
                multiline.append(f"line {start}: {','.join(record)}")
            elif len(record) != width:
                ragged_count += 1
                ragged.append(f"line {start} has {len(record)} fields: {','.join(record)}")
    except csv.Error as exc:
        return [structural(RULE_WELL_FORMED, f"line {reader.line_num} cannot be parsed as CSV: {exc}")]
    out = []
    if ragged_count:
        out.append(
            structural(
                RULE_FIELDS,
                f"{ragged_count} row(s) {scope} do not have the header's {width} fields",
                failing_rows=ragged_count,
                samples=ragged,
            )
        )
    if multiline:
        out.append(
            structural(
                RULE_ONE_LINE,
                f"{len(multiline)} record(s) contain a quoted line break; records must fit on one line",
                failing_rows=len(multiline),
                samples=multiline,
            )
        )
    return out
