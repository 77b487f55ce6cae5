"""Products from one catalog CSV, in either format: our own columns or a Shopify product export.

Runs while the knowledge folder is read (``folder.py``): ``sniff`` looks at the header, then the
rows go to ``catalog`` (our columns: sku, name, price, status, ...) or ``shopify`` (an export as
Shopify writes it, one row per variant). Either way each product is one dict of facts and every
skipped row is a warning with its line number.
"""
from __future__ import annotations

from responder.knowledge.catalog import (
    REQUIRED,
    STATUSES,
    _columns,
    _first,
    _records,
    _rows,
    iso_date,
    normalize_status,
    parse_price,
    sniff,
)
from responder.knowledge.shopify import read_shopify


def read_products(name: str, text: str, warnings: list[str], seen: dict[str, str]) -> list[tuple[int, dict]]:
    """Products of one CSV file as (line, facts); ``seen`` maps SKU (casefolded) -> where it was first."""
    records = _records(name, text, warnings)
    header = next(records, None)
    if header is None:
        warnings.append(f"{name}: empty, no products read")
        return []
    columns = _columns(name, header[1], warnings)
    if sniff(text) == "shopify":
        return read_shopify(name, header[1], columns, records, warnings, seen)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        warnings.append(f"{name}: missing required column(s) {', '.join(missing)}; no products read from it")
        return []
    products = []
    for line, row in _rows(name, columns, len(header[1]), records, warnings):
        where = f"{name} line {line}"
        if not row["sku"]:
            warnings.append(f"{where}: no SKU; row skipped")
            continue
        if not row["name"]:
            warnings.append(f"{where}: {row['sku']} has no name; row skipped")
            continue
        if not _first(row["sku"], where, seen, warnings):
            continue
        facts = {k: row[k] for k in REQUIRED if row[k]} | {k: v for k, v in row.items() if v and k not in REQUIRED}
        price = parse_price(row["price"]) if row["price"] else None
        if price:
            facts["price"] = price[0]
            if price[1]:
                facts.setdefault("currency", price[1])
        else:
            facts.pop("price", None)
            warnings.append(f"{where}: price {row['price']!r} of {row['sku']} is not a price; kept without a price"
                            if row["price"] else f"{where}: {row['sku']} has no price; kept without a price")
        status = normalize_status(row["status"])
        if status is None:
            warnings.append(f"{where}: status {row['status']!r} of {row['sku']} is not one of "
                            f"{', '.join(STATUSES)}; read as unknown, so the bot won't promise availability")
        facts["status"] = status or "unknown"
        if row.get("restock_date") and not (restock := iso_date(row["restock_date"])):
            warnings.append(f"{where}: restock_date {row['restock_date']!r} is not an ISO date (YYYY-MM-DD); dropped")
            del facts["restock_date"]
        elif row.get("restock_date"):
            facts["restock_date"] = restock
        products.append((line, facts))
    return products
