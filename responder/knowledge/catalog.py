"""The product catalog: ``catalog.csv`` in our own columns, or a Shopify product export, as facts.

Part of reading the knowledge folder: ``responder/knowledge/folder.py`` hands every decoded ``*.csv``
here and turns the returned products into ``product`` entries, which the index embeds and
retrieval matches by SKU, name and attributes; the drafter quotes their facts. Pure: text in,
``(line, facts)`` out, problems appended to ``warnings`` as "<file> line <n>: ...".

Our columns: ``sku``, ``name``, ``price``, ``status`` are required; ``restock_date`` is an ISO
date; every other column is a fact. Column names become lower snake_case. A row whose price does
not parse keeps its other facts and loses the price; an unknown status reads as ``unknown`` (the
drafter then never claims availability); an empty or repeated SKU (case-insensitive, across
files too) skips the row, the first one wins; a row with more non-empty fields than the header
(an unquoted comma shifts every column after it) is skipped, one with fewer reads the missing
ones as empty; broken quoting skips the row. All of these come with a warning.

A Shopify export is recognised by its header (``sniff``) and read by ``responder/knowledge/shopify.py``.
"""
from __future__ import annotations

import csv
import html
import io
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

REQUIRED = ("sku", "name", "price", "status")
STATUSES = ("active", "out_of_stock", "preorder", "discontinued")
STATUS_ALIASES = {"in_stock": "active", "instock": "active", "available": "active", "outofstock": "out_of_stock",
                  "sold_out": "out_of_stock", "soldout": "out_of_stock", "pre_order": "preorder",
                  "retired": "discontinued"}
CURRENCY_CODE = re.compile(r"(?i)(?<![a-z])(usd|eur|gbp|cad|aud|nzd|chf|jpy|sek|nok|dkk|pln|czk|inr|mxn|brl|"
                           r"zar|sgd|hkd)(?![a-z])")
CURRENCY_SYMBOL = {"€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "$": ""}  # "$" alone: which dollar?
RESERVED = {"sku", "name", "price", "status", "description", "variants", "handle", "currency"}


def column_name(raw: str) -> str:
    """'Burn Time' -> burn_time, 'restockDate' -> restock_date, 'Body (HTML)' -> body_html."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", raw.strip())
    return re.sub(r"[\W_]+", "_", spaced.lower()).strip("_")


def normalize_status(raw: str) -> str | None:
    key = re.sub(r"[\s\-]+", "_", raw.strip().lower())
    key = STATUS_ALIASES.get(key, key)
    return key if key in STATUSES else None


def parse_price(raw: str) -> tuple[str, str] | None:
    """'$1,299.00' -> ('1299.00', ''), '€12,50' -> ('12.50', 'EUR'), '12.5 USD' -> ('12.50', 'USD')."""
    text, currency = raw.strip(), ""
    if code := CURRENCY_CODE.search(text):
        currency, text = code.group(1).upper(), text[:code.start()] + text[code.end():]
    for symbol, name in CURRENCY_SYMBOL.items():
        if symbol in text:
            currency, text = currency or name, text.replace(symbol, "")
    text = re.sub(r"[\s'\u00a0\u202f]", "", text)           # spaces, no-break spaces, 1'299.00
    text = re.sub(r"(?i)^(us|ca|au|nz|hk|sg|a|c)(?=\d)", "", text)  # what is left of US$, C$ ...
    text = re.sub(r"[.,]-*$", "", text) if re.search(r"\d[.,]-+$", text) else text  # 12,-
    if not re.fullmatch(r"\d+(?:[.,]\d+)*", text):
        return None
    marks = [c for c in text if c in ".,"]
    decimal = None
    if len(set(marks)) == 2:
        decimal = marks[-1]
        if text.count(decimal) > 1:
            return None
    elif len(marks) == 1 and len(text) - text.index(marks[0]) - 1 != 3:
        decimal = marks[0]  # one mark, not three digits after it: a decimal mark, not thousands
    whole, _, fraction = text.rpartition(decimal) if decimal else (text, "", "")
    groups = re.split(r"[.,]", whole)
    if len(groups) > 1 and (len(set(re.findall(r"[.,]", whole))) > 1 or not 1 <= len(groups[0]) <= 3
                            or any(len(g) != 3 for g in groups[1:])):
        return None
    try:
        value = Decimal(f"{''.join(groups)}.{fraction or '0'}").quantize(Decimal("0.01"))
    except InvalidOperation:
        return None
    return str(value), currency


def iso_date(raw: str) -> str | None:
    for parse in (date.fromisoformat, lambda s: datetime.fromisoformat(s).date()):
        try:
            return parse(raw.strip()).isoformat()
        except ValueError:
            continue
    return None


def html_to_text(markup: str) -> str:
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>|<!--.*?-->", " ", markup)
    text = re.sub(r"(?i)<\s*li\b[^>]*>", "\n- ", text)
    text = re.sub(r"(?i)<\s*(?:br|/?p|/?div|/?h[1-6]|/li|/?ul|/?ol|/?tr|/?table|/?blockquote)\b[^>]*>", "\n", text)
    text = html.unescape(re.sub(r"<[^>]*>", "", text))
    return " ".join(line for line in (" ".join(part.split()) for part in text.split("\n")) if line)


def sniff(text: str) -> str | None:
    """'own', 'shopify' or None, from the header of a CSV."""
    header = next((fields for _, fields in _records("", text, [])), [])
    columns = {column_name(c) for c in header}
    if set(REQUIRED) <= columns:
        return "own"
    if "title" in columns and columns & {"handle", "url_handle"} and columns & {
            "body_html", "variant_sku", "variant_price", "option1_name", "option1_value"}:
        return "shopify"
    return None


def product_text(facts: dict[str, str]) -> str:
    """One readable line: 'Cedar & Smoke — sku: WW-101; price: 32.00; status: active; ...'."""
    parts = [f"{k.replace('_', ' ')}: {v.replace('_', ' ') if k == 'status' else v}"
             for k, v in facts.items() if k != "name"]
    return f"{facts.get('name', '')} — " + "; ".join(parts)


def _delimiter(text: str) -> str:
    first = text[:text.find("\n")] if "\n" in text else text
    return max(",;\t", key=first.count)  # "a;b;c" from a European spreadsheet; a tie keeps ","


def _records(name: str, text: str, warnings: list[str]):
    """(first line, fields) of every non-blank record; a malformed record is skipped with a warning."""
    reader = csv.reader(io.StringIO(text, newline="\n"), delimiter=_delimiter(text), strict=True)
    line = 0
    while True:
        start = line + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "end of data" in str(exc):
                warnings.append(f"{name} line {start}: a quote opened here is never closed; the rest is ignored")
                return
            warnings.append(f"{name} line {start}: broken quoting ({exc}); row skipped")
            if reader.line_num <= line:
                return
            fields = []
        line = reader.line_num
        if any(f.strip() for f in fields):
            yield start, fields


def _columns(name: str, header: list[str], warnings: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for i, raw in enumerate(header):
        column = column_name(raw)
        if column in columns:
            warnings.append(f"{name} line 1: column {raw.strip()!r} repeats {column!r}; the first one is used")
        elif column:
            columns[column] = i
    return columns


def _rows(name, columns, width, records, warnings):
    """(line, {column: stripped value}) for records whose field count is usable."""
    for line, fields in records:
        if len(fields) != width:
            extra = len(fields) > width and any(f.strip() for f in fields[width:])
            warnings.append(f"{name} line {line}: {len(fields)} fields but the header has {width}; "
                            + ("row skipped (an unquoted comma?)" if extra else "the missing ones read as empty"))
            if extra:
                continue
        yield line, {c: fields[i].strip() if i < len(fields) else "" for c, i in columns.items()}


def _first(sku: str, where: str, seen: dict[str, str], warnings: list[str]) -> bool:
    key = sku.casefold()
    if key in seen:
        warnings.append(f"{where}: duplicate SKU {sku} (first at {seen[key]}); this row is skipped")
        return False
    seen[key] = where
    return True


_KIND_STOP = {"the", "a", "an", "and", "of", "with", "for", "in", "set", "pack", "new", "classic", "mini", "large", "small"}


def alternatives(gone: dict[str, str], catalog: list[dict[str, str]], limit: int = 1) -> list[dict[str, str]]:
    """In-stock products of the same kind as ``gone`` (a discontinued one), to offer instead: the
    same product type when the catalog has one, else a shared word in the name ("Rope Trim Mug" ->
    "Harbor Mug"); none when nothing is of the same kind."""
    def words(row):
        return {w for w in re.findall(r"[a-z]+", row.get("name", "").lower()) if w not in _KIND_STOP and len(w) > 2}
    kind, named = (gone.get("type") or gone.get("category") or "").strip().lower(), words(gone)
    found = []
    for row in catalog:
        if row.get("status") != "active" or not row.get("price") or row.get("name") == gone.get("name"):
            continue
        row_kind = (row.get("type") or row.get("category") or "").strip().lower()
        if (kind and row_kind == kind) or (not kind and named & words(row)):
            found.append(row)
    return found[:limit]
