"""Shopify product exports, read as catalog products (part of ``responder/knowledge/catalog.py``).

``products.read_products`` hands a CSV here when its header looks like a Shopify export (classic
``Handle``/``Variant SKU`` headers or the newer ``URL handle``/``SKU`` ones). Rows are grouped by
handle: name from Title, SKU of the first variant (or the handle), the lowest variant price,
each variant in ``variants``, a sale's regular price (Compare At) in ``compare_at_price``,
the units on hand when every variant is tracked in ``inventory``, option values under the option's name, Body (HTML) as plain text.
Status active/archived become active/discontinued, drafts and unpublished products are skipped;
every tracked variant at zero stock that may not be oversold makes the product out_of_stock.
Internal columns (cost, barcode, SEO, images, Google Shopping) stay out.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from responder.knowledge.catalog import (
    RESERVED,
    _first,
    _rows,
    column_name,
    html_to_text,
    parse_price,
)

SHOPIFY = {  # our field: the normalized Shopify column names, classic export first
    "handle": ("handle", "url_handle"), "title": ("title",), "body": ("body_html", "description"),
    "vendor": ("vendor",), "type": ("type",), "tags": ("tags",), "category": ("product_category",),
    "published": ("published", "published_on_online_store"), "status": ("status",),
    "sku": ("variant_sku", "sku"), "price": ("variant_price", "price"),
    "compare_at": ("variant_compare_at_price", "compare_at_price"),
    "qty": ("variant_inventory_qty", "inventory_quantity"),
    "tracker": ("variant_inventory_tracker", "inventory_tracker"),
    "policy": ("variant_inventory_policy", "continue_selling_when_out_of_stock"),
    "grams": ("variant_grams", "weight_value_grams"),
    **{f"option{i}_{part}": (f"option{i}_{part}",) for i in (1, 2, 3) for part in ("name", "value")},
}
# One name per attribute however the shop spelled its option: "Colour" and "Colors" are "color".
OPTION_SPELLINGS = {"colour": "color", "colours": "color", "colors": "color", "sizes": "size", "farbe": "color",
                    "couleur": "color", "taille": "size", "größe": "size", "grosse": "size"}
METAFIELD = re.compile(r"^(.*?)\s*\(product\.metafields\.([\w-]+)\.[\w-]+\)$")
def read_shopify(name, header, columns, records, warnings, seen) -> list[tuple[int, dict]]:
    metafields = {}
    for raw in header:
        match = METAFIELD.match(raw.strip())
        if match and match.group(2) != "mm-google-shopping" and column_name(match.group(1)):
            metafields.setdefault(column_name(match.group(1)), column_name(raw))
    has_tracker = any(c in columns for c in SHOPIFY["tracker"])
    groups: dict[str, list[tuple[int, dict]]] = {}
    handle = ""
    for line, row in _rows(name, columns, len(header), records, warnings):
        values = {ours: next((row[c] for c in names if c in columns), "") for ours, names in SHOPIFY.items()}
        values["tracked"] = bool(values["tracker"]) or not has_tracker
        values["meta"] = {label: row[c] for label, c in metafields.items() if row.get(c)}
        handle = values["handle"] or handle  # image rows of some exports leave the handle blank
        if not handle:
            warnings.append(f"{name} line {line}: no Handle; row skipped")
            continue
        groups.setdefault(handle, []).append((line, values))
    products = [p for handle, rows in groups.items() if (p := _shopify_product(name, handle, rows, warnings))]
    # an archived product often shares its SKU with the one that replaced it: the live one wins
    ranked = sorted(products, key=lambda p: p[1]["status"] == "discontinued")
    kept = {id(p) for p in ranked if _first(p[1]["sku"], f"{name} line {p[0]}", seen, warnings)}
    return [p for p in products if id(p) in kept]


def _shopify_product(name: str, handle: str, rows: list[tuple[int, dict]], warnings: list[str]):
    where = f"{name} line {rows[0][0]}"
    first = next((r for _, r in rows if r["title"]), rows[0][1])
    if not first["title"]:
        warnings.append(f"{where}: product {handle} has no Title; skipped")
        return None
    status = _shopify_status(first, where, handle, warnings)
    if status is None:
        return None
    variants = [(line, r) for line, r in rows if r["sku"] or r["price"] or r["option1_value"]]
    facts = {"sku": next((r["sku"] for _, r in variants if r["sku"]), handle), "name": first["title"]}
    prices, described, sold_out, currency, was, stock = [], [], [], "", {}, []
    for line, r in variants:
        parsed = parse_price(r["price"]) if r["price"] else None
        regular = parse_price(r["compare_at"]) if r["compare_at"] else None
        on_sale = bool(parsed and regular and Decimal(regular[0]) > Decimal(parsed[0]))
        if on_sale:
            was[Decimal(parsed[0])] = regular[0]
        stock.append(_quantity(r))
        if r["price"] and not parsed:
            warnings.append(f"{name} line {line}: variant price {r['price']!r} of {handle} is not a price; ignored")
        if parsed:
            prices.append(Decimal(parsed[0]))
            currency = currency or parsed[1]
        sold_out.append(_sold_out(r))
        options = [r[f"option{i}_value"] for i in (1, 2, 3) if r[f"option{i}_value"]]
        label = " / ".join(options) if options and options != ["Default Title"] else first["title"]
        money = (f"{parsed[0]} {parsed[1]}" if parsed[1] else f"${parsed[0]}") if parsed else "no price"
        notes = ", ".join(n for n in (f"SKU {r['sku']}" if r["sku"] else "", f"regular price ${regular[0]}" if on_sale
                                      else "", "sold out" if sold_out[-1] else "") if n)
        described.append(f"{label}: {money}" + (f" ({notes})" if notes else ""))
    if prices:
        facts["price"] = str(min(prices))
        if min(prices) in was:  # Compare-at above the price: on sale, and the regular price a customer saw
            facts["compare_at_price"] = was[min(prices)]
    else:
        warnings.append(f"{where}: {handle} has no variant price; kept without a price")
    if stock and None not in stock:  # every variant tracked: how many we can sell
        facts["inventory"] = str(sum(stock))
    facts["status"] = "out_of_stock" if status == "active" and variants and all(sold_out) else status
    if currency:
        facts["currency"] = currency
    if description := html_to_text(first["body"]):
        facts["description"] = description
    for ours, key in (("vendor", "vendor"), ("type", "type"), ("tags", "tags"), ("category", "product_category")):
        if first[ours]:
            facts[key] = first[ours]
    for i in (1, 2, 3):
        option = first[f"option{i}_name"]
        values = list(dict.fromkeys(r[f"option{i}_value"] for _, r in variants
                                    if r[f"option{i}_value"] and r[f"option{i}_value"] != "Default Title"))
        if option and option.lower() != "title" and values:
            key = column_name(option) or f"option{i}"
            key = OPTION_SPELLINGS.get(key, key)  # "Colour" and "Color" are one attribute
            facts[f"option_{key}" if key in RESERVED or key in facts else key] = ", ".join(values)
    if len(described) > 1 or any(r["option1_value"] not in ("", "Default Title") for _, r in variants):
        facts["variants"] = "; ".join(described)
    grams = {_grams(r["grams"]) for _, r in variants} - {None}
    if len(grams) == 1:
        facts["weight"] = f"{grams.pop()} g"
    for label, value in first["meta"].items():
        facts.setdefault(label, value)
    facts["handle"] = handle
    return rows[0][0], facts


def variant_prices(facts: dict[str, str]) -> list[tuple[str, str]]:
    """(label, "$15.99") for each priced variant, read back from the ``variants`` fact this module
    writes ("Regular: $9.99; Large: $15.99 (SKU …, regular price $20.00)")."""
    out = []
    for part in (facts.get("variants") or "").split("; "):
        label, _, rest = part.partition(": ")
        money = rest.split(" (")[0].strip()
        if label and money and money != "no price":
            out.append((label.strip(), money))
    return out


def _shopify_status(first: dict, where: str, handle: str, warnings: list[str]) -> str | None:
    """Our status from Shopify's Status (Published in older exports); None: not for sale, skip it."""
    raw = first["status"].strip().lower()
    if not raw:
        raw = "unpublished" if first["published"].strip().lower() in ("false", "no", "0") else "active"
    if raw in ("draft", "unpublished"):
        warnings.append(f"{where}: {handle} is {'a draft' if raw == 'draft' else 'not published'} in Shopify; skipped")
        return None
    status = {"active": "active", "unlisted": "active", "archived": "discontinued"}.get(raw)
    if status is None:
        warnings.append(f"{where}: Shopify status {first['status']!r} of {handle} is unknown; read as unknown")
    return status or "unknown"


def _sold_out(variant: dict) -> bool:
    """Tracked, nothing left, and Shopify may not oversell it (policy deny, Shopify's default)."""
    try:
        quantity = float(variant["qty"]) if variant["qty"] else None
    except ValueError:
        quantity = None
    oversell = variant["policy"].strip().lower() in ("continue", "true", "yes")
    return variant["tracked"] and quantity is not None and quantity <= 0 and not oversell


def _quantity(variant: dict) -> int | None:
    """Units on hand when Shopify tracks them and won't oversell; None when the count means nothing."""
    if not variant["tracker"] or variant["policy"].strip().lower() in ("continue", "true", "yes"):
        return None
    try:
        return max(0, int(float(variant["qty"])))
    except ValueError:
        return None


def _grams(raw: str) -> str | None:
    try:
        value = Decimal(raw)
    except (InvalidOperation, ValueError):
        return None
    return f"{value.normalize():f}" if value > 0 else None
