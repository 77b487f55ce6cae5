"""Reading the knowledge folder: Markdown sections and chunks, our catalog, Shopify exports,
tone examples, and every kind of bad input, which must turn into warnings, never exceptions."""
from __future__ import annotations

import codecs
import json
import os
import random
import time
from pathlib import Path

import pytest

from responder.knowledge import catalog
from responder.knowledge.folder import (
    CHUNK_CHARS,
    Entry,
    Knowledge,
    load_knowledge,
    markdown_kind,
    split_text,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "knowledge"
HARBOR = ROOT.parent / "shared" / "eval" / "harbor" / "knowledge"


def counts(knowledge: Knowledge) -> dict[str, int]:
    return {kind: len(knowledge.of_kind(kind)) for kind in ("faq", "policy", "product", "example")}


def by_source(knowledge: Knowledge) -> dict[str, Entry]:
    return {e.source: e for e in knowledge.entries if e.chunk == 0}


def warned(knowledge: Knowledge, *parts: str) -> list[str]:
    """The warnings that contain every one of ``parts``."""
    return [w for w in knowledge.warnings if all(p in w for p in parts)]


# --- the shipped folders -------------------------------------------------------------------------

def test_the_sample_shop_loads_clean():
    knowledge = load_knowledge(ROOT / "knowledge")
    assert knowledge.warnings == []
    assert counts(knowledge) == {"faq": 14, "policy": 5, "product": 8, "example": 4}
    # The sample orders beside the knowledge are customers' data: never an entry anyone may retrieve.
    assert (ROOT / "knowledge" / "orders.csv").exists()
    assert not any("orders.csv" in e.source or "priya" in e.text.lower() for e in knowledge.entries)
    assert len({e.key for e in knowledge.entries}) == len(knowledge.entries)
    entries = by_source(knowledge)
    ship = entries["faq.md#When will my order ship?"]
    assert ship.kind == "faq" and ship.title == "When will my order ship?"
    assert ship.text.startswith("When will my order ship?\nCandles are poured")
    assert entries["policies.md#Returns"].kind == "policy"
    orchard = entries["catalog.csv#WW-105"]
    assert orchard.title == "Orchard Morning"
    assert orchard.facts == {
        "sku": "WW-105", "name": "Orchard Morning", "price": "28.00", "status": "out_of_stock",
        "description": "Crisp green apple and pear.", "size": "8 oz tin", "dimensions": "3 in wide x 2.5 in tall",
        "weight": "0.8 lb", "colors": "sage green", "burn_time": "40 hours",
        "scent_notes": "green apple, pear, white tea", "restock_date": "2027-01-15"}
    assert "Orchard Morning" in orchard.text and "restock date: 2027-01-15" in orchard.text
    assert "burn_time" not in entries["catalog.csv#WW-108"].facts  # empty cells are not facts
    example = entries["examples.jsonl#1"]
    assert example.kind == "example" and example.title == "hey does the amber noir smell sweet?"
    assert example.facts == {}


@pytest.mark.skipif(not HARBOR.is_dir(), reason="the public eval store (../shared/eval/harbor) is not here")
def test_the_public_store_loads_clean():
    knowledge = load_knowledge(HARBOR)
    assert knowledge.warnings == []
    assert counts(knowledge) == {"faq": 10, "policy": 4, "product": 9, "example": 4}
    assert by_source(knowledge)["catalog.csv#HC-103"].facts["restock_date"] == "2027-01-20"


def test_keys_hashes_and_version():
    a = Entry("faq.md#Q", "faq", "Q", "Q\nA", chunk=0)
    assert a.key == "faq.md#Q@0"
    assert a.content_hash == Entry("faq.md#Q", "faq", "Q", "Q\nA").content_hash
    assert len(a.content_hash) == 64
    assert a.content_hash != Entry("faq.md#Q", "faq", "Q", "Q\nB").content_hash
    assert a.content_hash != Entry("faq.md#Q", "faq", "Q", "Q\nA", chunk=1).content_hash
    assert a.content_hash != Entry("faq.md#Q", "policy", "Q", "Q\nA").content_hash
    p1 = Entry("c.csv#1", "product", "X", "x", {"sku": "1", "price": "2.00"})
    p2 = Entry("c.csv#1", "product", "X", "x", {"price": "2.00", "sku": "1"})
    assert p1.content_hash == p2.content_hash and hash(p1) == hash(p2)  # facts are hashed sorted
    assert p1.content_hash != Entry("c.csv#1", "product", "X", "x", {"sku": "1", "price": "3.00"}).content_hash
    one, two = Knowledge([a, p1]), Knowledge([p1, a])
    assert one.version == two.version and len(one.version) == 12
    assert Knowledge([a]).version != one.version
    shop = load_knowledge(ROOT / "knowledge")
    assert shop.version == load_knowledge(ROOT / "knowledge").version


def test_an_edit_changes_only_the_entries_it_touches(tmp_path):
    for f in (ROOT / "knowledge").iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    before = {e.key: e.content_hash for e in load_knowledge(tmp_path).entries}
    faq = tmp_path / "faq.md"
    faq.write_text(faq.read_text().replace("flat $7 per order", "flat $8 per order"))
    after = load_knowledge(tmp_path)
    changed = [e.key for e in after.entries if before[e.key] != e.content_hash]
    assert changed == ["faq.md#How much is shipping?@0"]


# --- Markdown ------------------------------------------------------------------------------------

def test_markdown_sections():
    knowledge = load_knowledge(FIXTURES / "messy")
    entries = by_source(knowledge)
    wash = entries["faq.md#How do I wash linen?"]
    assert "### Stains\nDab with cold water first." in wash.text  # ### stays in its ## section
    assert "## not a heading: inside a code fence" in wash.text
    assert entries["faq.md#Juniper FAQ"].text == "Juniper FAQ\nWelcome to our help page. Most answers are below."
    assert not [s for s in entries if "Front matter" in s or "title:" in entries[s].text]
    assert entries["faq.md#Shipping"].text == "Shipping\nWe ship in 2 days."
    assert entries["faq.md#Shipping (2)"].text == "Shipping\nExpress shipping costs $15."
    assert entries["faq.md#Shipping (2)"].title == "Shipping"
    assert "faq.md#Empty one" not in entries
    assert warned(knowledge, "faq.md line 18", "Empty one")
    assert entries["Return-Policy.md#Window"].kind == "policy"
    # no ## sections: one entry, titled by the # title or the file name
    assert entries["about.md#About Juniper Linen"].text == (
        "About Juniper Linen\nWe are a two-person studio in Maine weaving linen since 2014.")
    assert entries["care-notes.md#care-notes"].text == "care-notes\nPlain notes with no headings at all.\nSecond line."


@pytest.mark.parametrize("stem, kind", [
    ("policies", "policy"), ("Return-Policy", "policy"), ("shipping-policy", "policy"), ("refunds", "policy"),
    ("terms-of-service", "policy"), ("privacy", "policy"), ("faq", "faq"), ("shipping", "faq"),
    ("care-guide", "faq"), ("conditioner-faq", "faq"),
])
def test_markdown_kind(stem, kind):
    assert markdown_kind(stem) == kind


def test_a_long_section_is_split_into_overlapping_chunks(tmp_path):
    sentences = [f"Sentence number {i} says something about candles and wicks." for i in range(120)]
    body = " ".join(sentences[:60]) + "\n\n" + " ".join(sentences[60:])
    (tmp_path / "guide.md").write_text(f"# Guide\n\n## Long answer\n{body}\n\n## Short answer\nYes.\n")
    knowledge = load_knowledge(tmp_path)
    chunks = [e for e in knowledge.entries if e.source == "guide.md#Long answer"]
    assert len(chunks) >= 5 and [c.chunk for c in chunks] == list(range(len(chunks)))
    assert len({c.key for c in chunks}) == len(chunks)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.text.startswith("Long answer\nSentence number ")  # heading, then a whole sentence
        assert before.text.endswith(".")
        first_sentence = after.text.split("\n", 1)[1].split(". ")[0]
        assert first_sentence in before.text  # the overlap
    for chunk in chunks:
        assert chunk.title == "Long answer" and len(chunk.text) <= len("Long answer\n") + CHUNK_CHARS
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)
    assert by_source(knowledge)["guide.md#Short answer"].chunk == 0


def test_split_text_bounds():
    assert split_text("short") == ["short"]
    assert split_text("") == []
    blob = "x" * 5000  # no breaks at all: hard cuts, still bounded and overlapping
    chunks = split_text(blob)
    assert all(len(c) <= CHUNK_CHARS for c in chunks) and sum(map(len, chunks)) > 5000


def test_a_10_mb_document_is_split_fast(tmp_path):
    rng = random.Random(7)
    words = "wax wick jar burn scent order refund cedar amber glass ship hours the a of".split()
    paragraphs, size = ["# Maker's manual\n"], 0
    while size < 10_000_000:
        paragraph = " ".join(" ".join(rng.choices(words, k=rng.randint(5, 18))).capitalize() + "."
                             for _ in range(rng.randint(2, 8)))
        paragraphs.append(paragraph + "\n\n")
        size += len(paragraph) + 2
    (tmp_path / "manual.md").write_text("".join(paragraphs))
    started = time.perf_counter()
    knowledge = load_knowledge(tmp_path)
    version = knowledge.version
    took = time.perf_counter() - started
    assert knowledge.warnings == [] and version
    assert len(knowledge.entries) > 8000
    assert all(e.title == "Maker's manual" and len(e.text) <= CHUNK_CHARS + 20 for e in knowledge.entries)
    assert len({e.key for e in knowledge.entries}) == len(knowledge.entries)
    assert took < 5, f"10 MB took {took:.1f} s"  # about 0.3 s on a laptop


# --- our catalog ---------------------------------------------------------------------------------

def test_a_messy_catalog():
    knowledge = load_knowledge(FIXTURES / "messy")
    products = {e.facts["sku"]: e for e in knowledge.of_kind("product")}
    assert sorted(products) == ["CS-1", "CS-2", "CS-3", "CS-4", "CS-5", "CS-6", "CS-8"]
    cedar = products["CS-1"]
    assert cedar.source == "catalog.csv#CS-1" and cedar.title == "Cedar Candle"
    assert cedar.facts == {"sku": "CS-1", "name": "Cedar Candle", "price": "1299.00", "status": "active",
                           "description": "Big cedar candle.", "burn_time": "60 hours", "colors": "amber, grey"}
    assert products["CS-2"].facts["status"] == "out_of_stock"
    assert products["CS-2"].facts["restock_date"] == "2027-01-15"
    assert products["CS-3"].facts["status"] == "preorder"
    assert (products["CS-3"].facts["price"], products["CS-3"].facts["currency"]) == ("12.50", "EUR")
    assert "restock_date" not in products["CS-3"].facts
    assert warned(knowledge, "catalog.csv line 4", "15/01/2027")
    assert products["CS-4"].facts["status"] == "active" and products["CS-4"].facts["price"] == "12.50"
    assert products["CS-8"].facts["price"] == "1299.00" and products["CS-8"].facts["status"] == "discontinued"
    assert warned(knowledge, "catalog.csv line 6", "no SKU")
    assert warned(knowledge, "catalog.csv line 7", "duplicate SKU CS-1", "line 2")
    mystery = products["CS-5"].facts
    assert "price" not in mystery and mystery["status"] == "unknown"
    assert warned(knowledge, "catalog.csv line 8", "'call us'")
    assert warned(knowledge, "catalog.csv line 8", "'coming soon'", "unknown")
    assert products["CS-6"].facts == {"sku": "CS-6", "name": "Short Row", "price": "9.00", "status": "discontinued"}
    assert warned(knowledge, "catalog.csv line 9", "4 fields", "8")
    assert warned(knowledge, "catalog.csv line 10", "9 fields", "skipped")
    assert "CS-7" not in products


@pytest.mark.parametrize("raw, expected", [
    ("$1,299.00", ("1299.00", "")), ("1299", ("1299.00", "")), ("€12,50", ("12.50", "EUR")),
    ("12.5 USD", ("12.50", "USD")), ("1.299,00 €", ("1299.00", "EUR")), ("£8", ("8.00", "GBP")),
    ("US$ 14.99", ("14.99", "")), ("1 299,95", ("1299.95", "")), ("1'299.50", ("1299.50", "")),
    ("0", ("0.00", "")), ("12,-", ("12.00", "")), ("eur 7.5", ("7.50", "EUR")), ("1,234,567.891", ("1234567.89", "")),
    ("call us", None), ("", None), ("12-15", None), ("-5", None), ("1,2,3", None), ("12.34.56,7.8", None),
])
def test_prices(raw, expected):
    assert catalog.parse_price(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("active", "active"), (" Active ", "active"), ("Out of stock", "out_of_stock"), ("out-of-stock", "out_of_stock"),
    ("OUT_OF_STOCK", "out_of_stock"), ("pre-order", "preorder"), ("Pre order", "preorder"), ("PREORDER", "preorder"),
    ("Discontinued", "discontinued"), ("in stock", "active"), ("sold out", "out_of_stock"),
    ("coming soon", None), ("", None),
])
def test_statuses(raw, expected):
    assert catalog.normalize_status(raw) == expected


def test_column_names():
    assert [catalog.column_name(c) for c in ("SKU", "Burn Time", " restockDate ", "Body (HTML)", "Größe")] == [
        "sku", "burn_time", "restock_date", "body_html", "größe"]


def test_repeated_columns_keep_the_first(tmp_path):
    (tmp_path / "catalog.csv").write_text("sku,name,price,status,Colors,colors\nA-1,Mug,12,active,blue,red\n")
    knowledge = load_knowledge(tmp_path)
    assert knowledge.of_kind("product")[0].facts["colors"] == "blue"
    assert warned(knowledge, "catalog.csv line 1", "'colors'")


def test_a_catalog_missing_a_required_column(tmp_path):
    (tmp_path / "catalog.csv").write_text("SKU,Title,Price\nA-1,Mug,12.00\n")
    knowledge = load_knowledge(tmp_path)
    assert knowledge.entries == []
    assert warned(knowledge, "catalog.csv", "missing required column", "name", "status")


def test_an_empty_catalog_and_a_header_only_catalog(tmp_path):
    (tmp_path / "catalog.csv").write_text("")
    assert warned(load_knowledge(tmp_path), "catalog.csv", "empty")
    (tmp_path / "catalog.csv").write_text("sku,name,price,status\n")
    knowledge = load_knowledge(tmp_path)
    assert knowledge.entries == [] and warned(knowledge, "route every message to the owner")


def test_a_semicolon_catalog_from_a_european_spreadsheet(tmp_path):
    (tmp_path / "catalog.csv").write_text("sku;name;price;status\nA-1;Becher;12,50 €;aktiv\nA-2;Teller;9,00;active\n")
    knowledge = load_knowledge(tmp_path)
    facts = {e.facts["sku"]: e.facts for e in knowledge.of_kind("product")}
    assert facts["A-1"]["price"] == "12.50" and facts["A-1"]["status"] == "unknown"
    assert facts["A-2"] == {"sku": "A-2", "name": "Teller", "price": "9.00", "status": "active"}


def test_broken_quoting_is_reported_not_fatal(tmp_path):
    (tmp_path / "catalog.csv").write_text('sku,name,price,status\nA-1,"Mug"s,12.00,active\nA-2,Plate,9.00,active\n'
                                          'A-3,"Bowl,9.00,active\nA-4,Cup,5.00,active\n')
    knowledge = load_knowledge(tmp_path)
    assert [e.facts["sku"] for e in knowledge.of_kind("product")] == ["A-2"]
    assert warned(knowledge, "catalog.csv line 2", "quoting", "skipped")
    assert warned(knowledge, "catalog.csv line 4", "never closed")


# --- Shopify -------------------------------------------------------------------------------------

def test_a_shopify_export():
    knowledge = load_knowledge(FIXTURES / "shopify")
    products = {e.facts["handle"]: e for e in knowledge.of_kind("product")}
    assert list(products) == ["linen-apron", "waffle-towel-set", "linen-napkins", "striped-table-runner", "gift-card"]
    apron = products["linen-apron"]
    assert apron.source == "products_export_1.csv#JL-APR-R-NAT" and apron.title == "Linen Apron"
    assert apron.facts == {
        "sku": "JL-APR-R-NAT", "name": "Linen Apron", "price": "48.00", "status": "active",
        "inventory": "15",  # every variant tracked: units on hand
        "description": "Stonewashed European flax linen with deep pockets & a cross-back strap. "
                       "- Adjustable neck strap - Machine washable",
        "vendor": "Juniper Linen", "type": "Apron", "tags": "gift, kitchen, linen",
        "product_category": "Home & Garden > Linens & Bedding", "size": "Regular, Long", "color": "Natural, Indigo",
        "variants": "Regular / Natural: $48.00 (SKU JL-APR-R-NAT); Regular / Indigo: $48.00 (SKU JL-APR-R-IND, "
                    "sold out); Long / Natural: $54.00 (SKU JL-APR-L-NAT); Long / Indigo: $54.00 (SKU JL-APR-L-IND, "
                    "sold out)",
        "weight": "280 g", "care_instructions": "Wash warm, line dry", "handle": "linen-apron"}
    assert not any("14.50" in e.text or "cdn.shopify.com" in e.text for e in knowledge.entries)  # cost, images
    towels = products["waffle-towel-set"].facts
    assert towels["status"] == "out_of_stock" and "variants" not in towels  # every variant at 0, policy deny
    napkins = products["linen-napkins"].facts
    assert napkins["status"] == "active" and napkins["price"] == "28.00"  # at 0 but may be oversold
    assert napkins["color"] == "Sage, Rust, Oat"
    assert products["striped-table-runner"].facts["status"] == "discontinued"
    gift = products["gift-card"].facts
    assert gift["sku"] == "gift-card" and gift["status"] == "active"  # untracked inventory is not sold out
    assert gift["denominations"] == "$25, $50"
    assert knowledge.warnings == ["products_export_1.csv line 17: holiday-tea-towel is a draft in Shopify; skipped"]


def test_a_shopify_export_in_the_newer_column_names():
    knowledge = load_knowledge(FIXTURES / "shopify_2025")
    products = {e.facts["sku"]: e.facts for e in knowledge.of_kind("product")}
    assert knowledge.warnings == []
    mug = products["HC-MUG-W"]
    assert (mug["name"], mug["price"], mug["status"]) == ("Speckled Mug", "38.00", "active")
    assert mug["glaze"] == "White, Blue" and mug["color"] == "white; blue"  # an option, a metafield
    assert mug["description"] == "Wheel-thrown, 12 oz." and "11.00" not in str(mug)  # not the cost
    assert products["HC-VASE"]["status"] == "out_of_stock"


def test_a_shopify_export_named_catalog_csv_and_sku_clashes_across_files(tmp_path):
    export = (FIXTURES / "shopify" / "products_export_1.csv").read_bytes()
    (tmp_path / "catalog.csv").write_bytes(export)
    assert len(load_knowledge(tmp_path).of_kind("product")) == 5
    (tmp_path / "catalog.csv").write_text("sku,name,price,status\nJL-TWL-2,Towels,30.00,active\n")
    (tmp_path / "shopify.csv").write_bytes(export)
    knowledge = load_knowledge(tmp_path)
    assert len(knowledge.of_kind("product")) == 5
    assert by_source(knowledge)["catalog.csv#JL-TWL-2"].facts["price"] == "30.00"
    assert warned(knowledge, "shopify.csv line", "duplicate SKU JL-TWL-2", "catalog.csv line 2")


def test_html_to_text():
    assert catalog.html_to_text("<p>A &amp; B</p><script>x()</script><p>C<br>D</p>") == "A & B C D"
    assert catalog.html_to_text("") == ""


# --- examples and other files --------------------------------------------------------------------

def test_examples():
    knowledge = load_knowledge(FIXTURES / "messy")
    examples = knowledge.of_kind("example")
    assert [(e.source, e.title) for e in examples] == [
        ("examples.jsonl#1", "is the apron long?"), ("examples.jsonl#6", "do you gift wrap?")]
    assert examples[0].text == "is the apron long?\nIt is! The long one is 36 inches."
    for line in (2, 3, 4):
        assert warned(knowledge, f"examples.jsonl line {line}")


def test_other_files_are_ignored_with_a_warning(tmp_path):
    (tmp_path / "faq.md").write_text("# FAQ\n## Q\nA.\n")
    (tmp_path / "conversations.jsonl").write_text('{"customer": "hi"}\n')
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "inventory.csv").write_text("order,total\n1,2\n")
    (tmp_path / "orders.csv").write_text("Name,Email\n#1001,a@b.c\n")  # customers' orders: silent, never knowledge
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "faq.md").write_text("# Old\n## Q\nA.\n")
    (tmp_path / ".catalog-abc.tmp").write_text("sku,name\n")  # the catalog feed mid-write
    os.symlink(tmp_path / "missing.md", tmp_path / "dangling.md")
    knowledge = load_knowledge(tmp_path)
    assert [e.source for e in knowledge.entries] == ["faq.md#Q"]
    assert sorted(w.split(":")[0] for w in knowledge.warnings) == [
        ".DS_Store", "dangling.md", "inventory.csv", "logo.png", "notes.txt", "old"]


def test_an_empty_and_a_missing_folder(tmp_path):
    knowledge = load_knowledge(tmp_path)
    assert knowledge.entries == [] and len(knowledge.warnings) == 1
    assert "route every message to the owner" in knowledge.warnings[0]
    missing = load_knowledge(tmp_path / "nope")
    assert missing.entries == [] and warned(missing, "does not exist")
    (tmp_path / "file").write_text("x")
    assert warned(load_knowledge(tmp_path / "file"), "is not a folder")


def test_warnings_per_file_are_capped(tmp_path):
    rows = "".join(f",Nameless {i},1.00,active\n" for i in range(200))
    (tmp_path / "catalog.csv").write_text("sku,name,price,status\n" + rows)
    knowledge = load_knowledge(tmp_path)
    assert 30 < len(knowledge.warnings) < 40 and warned(knowledge, "170 more problems")


# --- encodings, BOMs, line endings ---------------------------------------------------------------

def test_bom_and_crlf_read_like_plain_utf8(tmp_path):
    plain = load_knowledge(ROOT / "knowledge")
    for f in (ROOT / "knowledge").iterdir():
        data = f.read_bytes().replace(b"\n", b"\r\n")
        (tmp_path / f.name).write_bytes(codecs.BOM_UTF8 + data)
    knowledge = load_knowledge(tmp_path)
    assert knowledge.warnings == []
    assert knowledge.version == plain.version


def test_windows_1252_files_are_converted(tmp_path):
    (tmp_path / "catalog.csv").write_bytes(
        "sku,name,price,status,description\nWW-1,Café Crème,€12,active,Naïve “smart” notes — and a façade\n"
        .encode("cp1252"))
    (tmp_path / "faq.md").write_bytes(
        "# FAQ\n\n## Où est ma commande?\nVotre commande est expédiée sous 2 jours ouvrés.\n".encode("cp1252"))
    knowledge = load_knowledge(tmp_path)
    product = knowledge.of_kind("product")[0]
    assert product.facts["name"] == "Café Crème" and product.facts["price"] == "12.00"
    assert product.facts["description"] == "Naïve “smart” notes — and a façade"
    assert by_source(knowledge)["faq.md#Où est ma commande?"].text.endswith("expédiée sous 2 jours ouvrés.")
    assert warned(knowledge, "catalog.csv", "not UTF-8", "cp1252")
    assert warned(knowledge, "faq.md", "not UTF-8", "cp1252")


@pytest.mark.parametrize("answer, encoding", [
    ("Svíčky z přírodního vosku odesíláme do dvou pracovních dnů. Děkujeme!", "cp1250"),
    ("Świeczki sojowe ręcznie robione, wysyłka w ciągu dwóch dni. Zażółć gęślą jaźń.", "cp1250"),
    ("Свечи ручной работы, доставка в течение двух рабочих дней.", "cp1251"),
    ("Envío en dos días hábiles. ¡Gracias por tu compra, señor Muñoz!", "cp1252"),
    ("送料は全国一律500円です。", "shift_jis"),
])
def test_other_legacy_encodings(tmp_path, answer, encoding):
    (tmp_path / "faq.md").write_bytes(f"# FAQ\n## Q\n{answer}\n".encode(encoding))
    knowledge = load_knowledge(tmp_path)
    assert by_source(knowledge)["faq.md#Q"].text == f"Q\n{answer}"
    assert warned(knowledge, "faq.md", "not UTF-8; converted from")


def test_utf16_is_converted(tmp_path):
    (tmp_path / "faq.md").write_bytes("# FAQ\r\n## Größe?\r\nEinheitsgröße.\r\n".encode("utf-16"))
    knowledge = load_knowledge(tmp_path)
    assert by_source(knowledge)["faq.md#Größe?"].text == "Größe?\nEinheitsgröße."
    assert warned(knowledge, "faq.md", "utf_16")


def test_utf8_with_a_stray_byte_keeps_the_utf8(tmp_path):
    (tmp_path / "faq.md").write_bytes("# FAQ\n\n## Größe?\nUnsere Kerzen wiegen 400 g — schön schwer.\n".encode()
                                      + b"## Price\nOnly 12\x80 today.\n")
    knowledge = load_knowledge(tmp_path)
    assert by_source(knowledge)["faq.md#Größe?"].text == "Größe?\nUnsere Kerzen wiegen 400 g — schön schwer."
    assert by_source(knowledge)["faq.md#Price"].text == "Price\nOnly 12\ufffd today."
    assert warned(knowledge, "faq.md", "line 6", "replaced")


def test_undecodable_files_name_the_first_bad_line(tmp_path):
    (tmp_path / "faq.md").write_bytes(b"# FAQ\n## Q\nfine\n\x00\x9f\x92\x96\xff\xfe\x00\x01 binary\n" + os.urandom(64))
    (tmp_path / "catalog.csv").write_bytes(b"sku,name,price,status\n" + bytes(range(256)) * 4)
    knowledge = load_knowledge(tmp_path)
    assert warned(knowledge, "faq.md", "cannot be decoded", "first bad line 4")
    assert warned(knowledge, "catalog.csv", "cannot be decoded", "first bad line 2")
    assert knowledge.entries == []


@pytest.mark.parametrize("name", ["faq.md", "catalog.csv", "products.csv", "examples.jsonl"])
def test_garbage_never_raises(tmp_path, name):
    rng = random.Random(name)
    pieces = [b"#", b"## ", b"\n", b"\r\n", b",", b'"', b";", b"sku,name,price,status\n", b"Handle,Title,Variant SKU\n",
              b"{", b"}", b'"customer"', b":", b"\xef\xbb\xbf", b"\xff", b"\x00", b"```", b"$1,2", b"caf\xe9", b" "]
    for _ in range(30):
        (tmp_path / name).write_bytes(b"".join(rng.choices(pieces, k=rng.randint(0, 300))))
        knowledge = load_knowledge(tmp_path)
        assert not warned(knowledge, "could not be read"), knowledge.warnings  # what a reader bug turns into
        json.dumps([e.facts for e in knowledge.entries])
