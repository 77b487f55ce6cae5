"""The claim guard: every figure, product, stock claim, promise and contact in a draft is checked
against the knowledge it was drafted from. Fixtures are the sample shop in ``knowledge/``."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.decide import guard
from responder.decide.guard import check_claims, extract
from responder.knowledge.folder import load_knowledge
from responder.knowledge.retrieve import Hit

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = load_knowledge(ROOT / "knowledge")
CATALOG = [e.facts for e in KNOWLEDGE.entries if e.kind == "product"]
ENTRIES = {e.title: e for e in KNOWLEDGE.entries if e.kind != "example"}
POLICIES = (ROOT / "knowledge" / "policies.md").read_text()
STORE = {"name": "Wick & Willow Candle Co.", "owner_name": "Maya", "support_email": "hello@wickandwillow.example"}


def hits(*titles: str) -> list[Hit]:
    return [Hit(e.source, e.kind, e.title, e.text, 1.0, 0.9, e.facts) for e in (ENTRIES[t] for t in titles)]


MYSTERY = {"sku": "WW-900", "name": "Mystery Box", "price": "", "status": "unknown"}


def check(reply: str, titles=(), **kw) -> list[str]:
    kw.setdefault("store_facts", STORE)
    return check_claims(reply, hits=hits(*titles), catalog=CATALOG + [MYSTERY], policies_text=POLICIES, **kw)


SHIPPING, BURN, INTL = "How much is shipping?", "How long do your candles burn?", "Do you ship internationally?"
DAMAGED, RETURNS = "Damaged or broken items", "Returns"

# (rule, reply, drafted from, a reason that must be given)
CAUGHT = [
    # 3. availability: the classic disaster, and its relatives
    ("discontinued in stock", "Yes, Lavender Fields is in stock!", ["Lavender Fields"],
     "says Lavender Fields is in stock, but it's discontinued"),
    ("pronoun in next sentence", "Lavender Fields is lovely. It's in stock now.", ["Lavender Fields"],
     "says Lavender Fields is in stock, but it's discontinued"),
    ("out of stock ships today", "Orchard Morning ships today!", ["Orchard Morning"],
     "says Orchard Morning is available ('ships today'), but it's out of stock"),
    ("preorder available now", "Winter Pine is available now.", ["Winter Pine"], "but it's pre-order only"),
    ("we have it", "Good news: we have it, Orchard Morning is a favourite.", ["Orchard Morning"],
     "says Orchard Morning is available ('we have it'), but it's out of stock"),
    ("wrong restock date", "Orchard Morning is back in stock on Jan 20.", ["Orchard Morning"],
     "date Jan 20 for Orchard Morning; catalog says 2027-01-15"),
    ("restock date of another product", "Orchard Morning is back in stock on 2026-12-05.",
     ["Orchard Morning", "Winter Pine"], "says Orchard Morning is back 2026-12-05; the catalog says 2027-01-15"),
    ("no restock date", "Cedar & Smoke will be back in stock on January 15th.", ["Cedar & Smoke", "Orchard Morning"],
     "says Cedar & Smoke is back January 15th; the catalog has no restock date"),
    ("discontinued restock", "Lavender Fields will be back in stock soon.", ["Lavender Fields"],
     "promises Lavender Fields ('be back'), but it's discontinued"),
    ("discontinued order", "We can order more Lavender Fields for you.", ["Lavender Fields"],
     "promises Lavender Fields ('can order more'), but it's discontinued"),
    ("unknown status", "Mystery Box is in stock.", [],
     "says Mystery Box is in stock, but it's not known to be in stock"),
    ("preorder in stock", "Winter Pine is in stock.", [], "says Winter Pine is in stock, but it's pre-order only"),
    # 1. figures
    ("wrong price", "Amber Noir is $19.", ["Amber Noir"], "price $19 for Amber Noir; catalog says $48"),
    ("another product's price", "Amber Noir is $32.", ["Amber Noir", "Cedar & Smoke"],
     "price $32 for Amber Noir; catalog says $48"),
    ("price with no product", "Shipping is $9 per order.", [SHIPPING],
     "price $9 is not in the knowledge it was drafted from"),
    ("euro price", "That comes to €12,50.", [SHIPPING], "price €12,50 is not in the knowledge it was drafted from"),
    ("usd price", "It's USD 49 in total.", [SHIPPING], "price USD 49 is not in the knowledge it was drafted from"),
    ("dollars in words", "It's 19 dollars.", [SHIPPING],
     "price 19 dollars is not in the knowledge it was drafted from"),
    ("burn time forever", "Our candles burn for approximately forever.", [BURN],
     "says 'forever', which the knowledge doesn't"),
    ("burn time not in knowledge", "Cedar & Smoke burns for about 80 hours.", ["Cedar & Smoke"],
     "duration 80 hours for Cedar & Smoke; catalog says 60 hours"),
    ("delivery days", "Delivery takes 1–2 business days.", [SHIPPING],
     "duration 1–2 business days is not in the knowledge it was drafted from"),
    ("weeks", "International orders take two weeks.", [INTL], "duration two weeks is not in the knowledge"),
    ("percentage", "Our wax is 50% soy.", ["What are your candles made of?"], "percentage 50% is not in the knowledge"),
    ("quantity", "Cedar & Smoke is a 10 oz jar.", ["Cedar & Smoke"],
     "quantity 10 oz for Cedar & Smoke; catalog says 12 oz"),
    ("count", "Wholesale starts at 8 or more candles.", ["Do you sell wholesale?"], "quantity 8 or more"),
    # 2. products
    ("invented product", "You might like our Lavender Dreams candle instead.", ["Lavender Fields"],
     "product 'Lavender Dreams' is not in the catalog (closest: Lavender Fields)"),
    ("near a catalog name", "Have you tried Cedar & Sage? It's lovely.", [],
     "product 'Cedar & Sage' is not in the catalog (closest: Cedar & Smoke)"),
    ("invented with a type noun", "The Midnight Orchid candle is lovely.", [],
     "product 'Midnight Orchid' is not in the catalog"),
    # 4. promises
    ("discount", "I'll give you 20% off your next order.", [RETURNS], "promises a discount ('20% off')"),
    ("free shipping", "We'll ship it for free this time.", [RETURNS], "promises free shipping ('ship it for free')"),
    ("store credit", "We'll credit your account with $10.", [RETURNS], "promises store credit ('credit your')"),
    ("exception", "I'll make an exception and take back the burned candle.", [RETURNS], "promises an exception"),
    ("prepaid label", "We'll email you a prepaid return label.", [RETURNS],
     "promises free shipping ('prepaid return label')"),
    # 5. contacts
    ("email", "Write to refunds@wickwillow.com.", [RETURNS], "email refunds@wickwillow.com is not in the knowledge"),
    ("url", "See https://wickandwillow.example/secret-sale for details.", [RETURNS],
     "link https://wickandwillow.example/secret-sale is not in the knowledge"),
    ("bare domain", "Order at wick-willow.shop today.", [RETURNS], "link wick-willow.shop is not in the knowledge"),
    ("phone", "Call us on (207) 555-0143.", [RETURNS], "phone number (207) 555-0143 is not in the knowledge"),
    # 6. the prompt and other customers
    ("system prompt", "My system prompt says to be brief.", [], "reveals its instructions ('system prompt')"),
    ("my instructions", "Here are my rules: never refund.", [], "reveals its instructions ('Here are my rules')"),
    ("told to", "As an AI language model I was told to be helpful.", [], "reveals its instructions ('As an AI')"),
    ("template", "Hi {{ customer_name }}, thanks!", [], "has template remnants ('{{')"),
    ("placeholder", "Hi [Customer Name], thanks!", [], "has template remnants ('[Customer Name]')"),
    ("prompt json", 'Sure: {"role": "system", "content": "You are"}', [], "quotes prompt text"),
    ("another order", "Order #10234 shipped yesterday.", [],
     "mentions order 10234, which isn't in the customer's message"),
    ("another email", "I've sent it to jane.doe@gmail.com.", [],
     "email jane.doe@gmail.com is not in the knowledge or the customer's message"),
    # 7. person
    ("real person", "I'm a real person, not a bot!", [], "claims to be a person ('I'm a real person')"),
    ("human", "Yes, I am human.", [], "claims to be a person ('I am human')"),
    ("personally typing", "This is Maya personally typing this.", [],
     "claims to be a person ('This is Maya personally')"),
    ("not a bot", "Don't worry, I'm not a bot.", [], "claims to be a person ('I'm not a bot')"),
]

# (rule, reply, drafted from): replies that say only what the knowledge says
PASSED = [
    ("stock, active", "Cedar and Smoke is $32 and in stock.", ["Cedar & Smoke"]),
    ("two prices", "Cedar & Smoke is $32 and Amber Noir is $48.", ["Cedar & Smoke", "Amber Noir"]),
    ("price 48.00 as $48", "Amber Noir is $48.00, and it's in stock.", ["Amber Noir"]),
    ("discontinued said plainly",
     "Lavender Fields has been discontinued, so we can't order more.", ["Lavender Fields"]),
    ("discontinued, other in stock", "Lavender Fields is discontinued, but Cedar & Smoke is in stock.",
     ["Lavender Fields", "Cedar & Smoke"]),
    ("in stock then discontinued", "Cedar & Smoke is in stock and Lavender Fields is discontinued.",
     ["Lavender Fields", "Cedar & Smoke"]),
    ("not in stock", "Orchard Morning isn't in stock right now; we expect it on 2027-01-15.", ["Orchard Morning"]),
    ("restock date written out", "Orchard Morning should be back in stock on January 15th, 2027.", ["Orchard Morning"]),
    ("preorder", "Winter Pine is available for pre-order and ships from Dec 5.", ["Winter Pine"]),
    ("will check", "I'll check whether it's available.", ["Orchard Morning"]),
    ("range endpoints", "Standard delivery takes 3-5 business days; free over $60, otherwise $7.", [SHIPPING]),
    ("inside a range", "Delivery to Canada usually takes about 10 business days.", [INTL]),
    ("range with to", "Canada takes 7 to 14 business days and costs $18.", [INTL]),
    ("burn times", "The 8 oz tin burns for about 40 hours and the 12 oz jar for about 60 hours.", [BURN]),
    ("sizes", "The Sea Salt & Fig candle is a 12 oz jar, 3.5 in wide x 4 in tall.", ["Sea Salt & Fig"]),
    ("fraction", "Trim the wick to 1/4 inch and let it melt for 2–3 hours.", ["How do I get an even burn?"]),
    ("partial name", "The Blue Spruce tin is in stock and burns for about 20 hours.", ["Blue Spruce Travel Tin"]),
    ("full refund stated", "We'll refund you in full or send a free replacement, whichever you prefer.", [DAMAGED]),
    ("refund not promised", "We can't refund burned candles.", [SHIPPING]),
    ("payment names", "We take Visa, Mastercard, American Express, Apple Pay and PayPal.",
     ["What payment methods do you accept?"]),
    ("store and sign-off", "Thanks for shopping with Wick & Willow!\n\nMaya", []),
    ("support email", "Email hello@wickandwillow.example with a photo.", [DAMAGED]),
    ("customer's own order", "I've found order #10234 and it ships today.", []),
    ("burn instructions", "Don't burn a candle for more than 4 hours at a time.", ["How do I get an even burn?"]),
    ("gift cards", "Gift cards come in $25, $50 and $100 and never expire.", ["Do you have gift cards?"]),
    ("human words", "Our candles are safe around people; a human nose will love them.", []),
]


@pytest.mark.parametrize("rule, reply, sources, reason", CAUGHT, ids=[c[0] for c in CAUGHT])
def test_unbacked_claims_are_caught_with_a_specific_reason(rule, reply, sources, reason):
    reasons = check(reply, sources, customer_text="Hi, where is my order?")
    assert any(reason in r for r in reasons), reasons


@pytest.mark.parametrize("rule, reply, sources", PASSED, ids=[p[0] for p in PASSED])
def test_replies_that_stay_with_the_knowledge_pass(rule, reply, sources):
    assert check(reply, sources, customer_text="Is order #10234 on its way?") == []


@pytest.mark.parametrize("entry", [e for e in KNOWLEDGE.entries if e.kind in ("faq", "policy")], ids=lambda e: e.source)
def test_the_knowledge_itself_passes_when_drafted_from(entry):
    body = entry.text.split("\n", 1)[-1]
    assert check(body, [entry.title]) == []


@pytest.mark.parametrize("facts", CATALOG, ids=lambda f: f["sku"])
def test_a_product_answer_from_its_row_passes(facts):
    status = {"active": "It's in stock.", "out_of_stock": "It's out of stock right now.",
              "preorder": "It's available for pre-order.", "discontinued": "It's been discontinued."}[facts["status"]]
    reply = f"{facts['name']} is ${facts['price']}. {status} It's a {facts['size']}."
    if facts.get("restock_date"):
        reply += f" We expect it on {facts['restock_date']}."
    assert check(reply, [facts["name"]]) == []


def test_order_numbers_are_only_checked_when_the_customer_message_is_known():
    assert check("Order #10234 shipped.") == []
    assert check("Order #10234 shipped.", customer_text="my order 10234?") == []


def test_figures_normalise_money_ranges_and_dates():
    [price] = extract("It's $1,299.00.")
    assert price.kind == "price" and price.lo == 1299
    assert [c.kind for c in extract("3–5 business days; 12 oz; 50%; Jan 20; 2027-01-20")] == \
        ["duration", "quantity", "percentage", "date", "date"]
    assert extract("January 20th")[0].lo == (None, 1, 20) and extract("you may 2 of them") == []


def test_a_reply_too_long_to_check_is_held():
    assert check("It's $1. " * 1000) == ["the reply is 9000 characters, too long to check (limit 5000)"]


def test_a_check_that_crashes_becomes_a_reason(monkeypatch):
    def broken(c):
        raise RuntimeError("boom")
    monkeypatch.setattr(guard, "RULES", [("figures", broken)] + guard.RULES[1:])
    assert check("Amber Noir is $48.", ["Amber Noir"])[0] == "the figures check failed on this reply (RuntimeError)"


ODD = st.one_of(st.none(), st.integers(), st.text(max_size=20),
                st.dictionaries(st.text(max_size=5), st.text(max_size=10)))


@settings(max_examples=150, deadline=None)
@given(reply=st.one_of(st.text(max_size=300), st.none()),
       catalog=st.lists(st.one_of(st.dictionaries(st.sampled_from(["sku", "name", "price", "status", "restock_date"]),
                                                  st.one_of(st.text(max_size=15), st.none())), ODD), max_size=4),
       policies=st.one_of(st.text(max_size=100), st.none()), store=ODD,
       customer=st.one_of(st.none(), st.text(max_size=50)))
def test_never_raises(reply, catalog, policies, store, customer):
    odd_hits = [Hit("x", "product", "t", "text", 1.0, facts={"name": "Amber Noir", "price": "x"}), object(), None]
    result = check_claims(reply, hits=odd_hits + hits("Amber Noir"), catalog=catalog + CATALOG, policies_text=policies,
                          store_facts=store, customer_text=customer)
    assert isinstance(result, list) and all(isinstance(r, str) for r in result)
    # Odd input is read, not survived: no rule gave up on it (a rule that raises is reported as
    # "the ... check failed on this reply", which holds every reply, so it must not happen here).
    assert not [r for r in result if "check failed on this reply" in r], result


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["Amber Noir", "Lavender Fields", "is", "in stock", "$48", "$19", "back on", "Jan 20",
                                 "refund", "80 hours", "forever", ",", ".", "but", "not", "it's", "our", "Candle"]),
                max_size=25))
def test_never_raises_on_claim_soup(words):
    result = check(" ".join(words), ["Amber Noir", SHIPPING])
    assert isinstance(result, list) and not [r for r in result if "check failed on this reply" in r], result


def test_restock_dates_reach_customers_in_words_and_a_passed_one_is_never_promised():
    """The offline drafter's availability sentence: "December 5", not "2026-12-05"; a restock date
    already behind us is not promised, and the draft says so for the owner to check."""
    from datetime import date

    from responder.core.text import human_date
    from responder.draft.offline import product_answer

    assert human_date("2026-12-05", date(2026, 12, 1)) == "December 5"
    assert human_date("2027-01-15", date(2026, 12, 1)) == "January 15, 2027"
    assert human_date("soon", date(2026, 12, 1)) == ""
    [row] = [f for f in CATALOG if f["name"] == "Winter Pine"]  # pre-order, due 2026-12-05
    reply, found, notes = product_answer(row, "Is Winter Pine in stock?", date(2026, 12, 1))
    assert reply.endswith("so it isn't in stock yet. We expect it on December 5.") and found and not notes
    assert check(reply, ["Winter Pine"]) == []  # the guard reads the date in words
    late, _, notes = product_answer(row, "Is Winter Pine in stock?", date(2026, 12, 7))
    assert "December 5" not in late and "2026-12-05" not in late and late.endswith("so it isn't in stock yet.")
    assert notes == ["the catalog's restock date for Winter Pine (2026-12-05) has passed: check when it's due"]


def test_a_discontinued_product_leads_with_its_being_gone_not_its_price():
    from responder.draft.offline import product_answer

    [row] = [f for f in CATALOG if f["status"] == "discontinued"]
    reply, found, _ = product_answer(row, f"Do you still have {row['name']}?")
    assert reply == f"{row['name']} has been discontinued, so we can't order more." and found
    assert "$" not in reply and check(reply, [row["name"]]) == []


def test_a_restock_date_that_has_passed_is_not_a_promise_to_make():
    """Whatever drafted it (the model reads the catalog's date too): a restock date before the
    shop's today is held, in words or as written; one still ahead passes."""
    from datetime import date

    dec_7, dec_1 = date(2026, 12, 7), date(2026, 12, 1)
    for said in ("Winter Pine will be back in stock on December 5.", "Winter Pine is back in stock on 2026-12-05."):
        assert check(said, ["Winter Pine"], today=dec_1) == []
        [reason] = check(said, ["Winter Pine"], today=dec_7)
        assert reason.startswith("says Winter Pine is back ") and reason.endswith("a date that has already passed")
    assert check("Orchard Morning should be back in stock on January 15th, 2027.", ["Orchard Morning"],
                 today=dec_7) == []
    assert check("Orchard Morning will be back in stock on January 15.", ["Orchard Morning"], today=dec_7) == []


def test_a_discontinued_product_is_answered_with_one_of_the_same_kind_still_made():
    from responder.draft.base import DraftRequest
    from responder.draft.offline import OfflineDrafter
    from responder.knowledge.catalog import alternatives
    from responder.knowledge.retrieve import Hit

    mugs = [{"name": "Rope Trim Mug", "price": "36.00", "status": "discontinued"},
            {"name": "Harbor Mug", "price": "38.00", "status": "active"},
            {"name": "Tide Mug", "price": "30.00", "status": "out_of_stock"},
            {"name": "Latte Bowl", "price": "34.00", "status": "active"}]
    assert alternatives(mugs[0], mugs) == [mugs[1]]  # same kind by name, in stock, priced
    assert alternatives({"name": "Lavender Fields", "status": "discontinued"}, CATALOG) == []  # none of its kind
    sofas = [{"name": "Cream Sofa", "type": "Sofa", "status": "discontinued", "price": "500.00"},
             {"name": "Brown Couch", "type": "Sofa", "status": "active", "price": "450.00"},
             {"name": "Cream Lamp", "type": "Lamp", "status": "active", "price": "40.00"}]
    assert alternatives(sofas[0], sofas) == [sofas[1]]  # the product type, when the catalog has one

    hit = Hit("catalog.csv#HC-104", "product", "Rope Trim Mug", "Rope Trim Mug", 0.9, similarity=0.9, facts=mugs[0],
              named=True)
    result = OfflineDrafter().draft(DraftRequest(text="Do you still have the Rope Trim Mug?", hits=(hit,),
                                                 alternatives=(mugs[1],)))
    assert result.reply == ("Rope Trim Mug has been discontinued, so we can't order more. If you'd like something "
                            "similar, we still make the Harbor Mug ($38.00).")


def test_the_greeting_passes_the_guard_with_no_knowledge_to_lean_on():
    """A display name that looks like a name can still make the greeting promise something
    ("Hi Refunded,", "Hi Replacement,"): the guard decides, and the reply greets "Hi," instead."""
    from responder.decide.greeting import checked_greeting_name

    assert checked_greeting_name("Helen Whitfield") == ("Helen", [])
    assert checked_greeting_name("Amber Rose") == ("Amber", [])  # a product's word is still a name
    assert checked_greeting_name("http://evil.example/refund-form") == ("", [])  # never looked like one
    for forged, why in (("Replacement Sent", "promises a replacement"), ("Refunded", "promises a refund"),
                        ("JOHN SMITH", "in capitals")):
        name, [reason] = checked_greeting_name(forged)
        assert name == "" and reason.startswith("greeted without a name") and why in reason, reason
