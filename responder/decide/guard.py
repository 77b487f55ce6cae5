"""Claim guard: every claim in a draft checked against the knowledge it was drafted from.

Runs after drafting and tone, before routing: ``check_claims`` reads the reply as it will be sent beside its hits,
the catalog and the policies, and returns what it could not verify as short reasons for the owner ("price $19 for
Amber Noir; catalog says $48"); [] means it passed. Like routing it is a table of small named checks (Mailman's
rules) over the prepared ``Claims``. A check that trips over odd input returns a reason of its own, so the guard
never raises and never waves an unchecked reply through.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Callable

from rapidfuzz import fuzz, process

from responder.core.text import split_sentences
from responder.decide.figures import NUM, Claim, covered, decimal_of, extract, overlaps
from responder.decide.guard_patterns import (
    ACTIONS,
    CLAUSE,
    EMAIL,
    HEDGE,
    IN_STOCK,
    LEADING,
    LEAKS,
    NAME_LIKE,
    ORDER,
    PERSON,
    PHONE,
    PRICED,
    PROMISES,
    RESTOCK,
    SECRET,
    SHOUT,
    STATUS,
    TRAILING_CURRENCY,
    TYPE_NOUNS,
    URL,
    VAGUE,
)

MAX_CHARS = 5000


def _norm(text) -> str:
    return re.sub(r"[^a-z0-9]+", " ", str(text).lower().replace("&", " and ")).strip()


def find_mentions(reply: str, catalog: list[dict[str, str]]) -> list[tuple[int, int, dict]]:
    """(start, end, product) for each product the reply names: exactly, fuzzily ("Cedar and Smoke"), by a run of its
    name no other product shares ("Blue Spruce"), or by SKU."""
    names = {_norm(p.get("name", "")): p for p in catalog if _norm(p.get("name", ""))}
    runs: dict[str, list] = {}
    for key, p, w in ((key, p, key.split()) for key, p in names.items()):
        for i, j in ((i, j) for i in range(len(w)) for j in range(i + 2, len(w) + 1) if not {w[i], w[j - 1]} & LEADING):
            runs.setdefault(" ".join(w[i:j]), []).append(p)
    ends = {w for key in names for w in (key.split()[0], key.split()[-1])}
    tokens = [(m.start(), m.end(), _norm(m.group(0)) or "and") for m in re.finditer(r"[A-Za-z0-9]+|&", reply)]
    sku, longest = {str(p.get("sku", "")).lower(): p for p in catalog}, max(map(len, map(str.split, names)), default=0)
    found = [(100.0, 1, m.span(), sku[m[0].lower()]) for m in re.finditer(r"[\w-]{3,}", reply) if m[0].lower() in sku]
    for i, n in ((i, n) for i in range(len(tokens)) for n in range(1, min(longest + 1, len(tokens) - i) + 1)):
        key, span = " ".join(t[2] for t in tokens[i:i + n]), (tokens[i][0], tokens[i + n - 1][1])
        if key in names:
            found.append((100.0, n, span, names[key]))
        elif n >= 2 and tokens[i][2] in ends and (best := process.extractOne(key, list(names), scorer=fuzz.ratio,
                                                                             score_cutoff=88)):
            found.append((best[1], n, span, names[best[0]]))
        elif len(runs.get(key, ())) == 1 and reply[span[0]].isupper():
            found.append((80.0, n, span, runs[key][0]))
    chosen: list[tuple[int, int, dict]] = []
    for _, _, span, p in sorted(found, key=lambda f: (-f[0], -f[1])):
        chosen += [] if overlaps(span, chosen) else [(*span, p)]
    return sorted(chosen, key=lambda m: m[0])


@dataclass
class Claims:
    """What the checks share: the reply and its sentences, the knowledge, the figures and the products named."""
    reply: str
    knowledge: str  # lowercased: hits, policies, store facts, named products' rows
    catalog: list[dict[str, str]]
    hit_products: list[dict[str, str]]
    customer_text: str | None
    mentions: list[tuple[int, int, dict]]
    customer_address: str | None = None
    today: date | None = None  # the shop's date: a restock date before it is not a promise to make
    sentences: list[tuple[int, int]] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    known: list[Claim] = field(default_factory=list)

    def sentence_of(self, pos: int) -> tuple[int, int]:
        return next(((a, b) for a, b in self.sentences if a <= pos < b), (0, len(self.reply)))

    def clause_start(self, pos: int) -> int:
        start = self.sentence_of(pos)[0]
        return max([m.end() for m in CLAUSE.finditer(self.reply, start, pos)], default=start)

    def hedged(self, pos: int) -> bool:
        return bool(HEDGE.search(self.reply, self.clause_start(pos), pos))

    def priced(self, pos: int) -> dict | None:
        """The product whose name runs straight into the price at ``pos`` ("Amber Noir is $5"): only its price fits."""
        return next((p for _, end, p in self.mentions
                     if end <= pos <= end + 30 and PRICED.fullmatch(self.reply, end, pos)), None)

    def product_at(self, pos: int, same_sentence: bool = False) -> dict | None:
        """The product a claim at ``pos`` is about: named earlier in its clause, else later in it, else earlier in
        its sentence, else later, else in an earlier sentence ("It's in stock"); else the only one drafted from."""
        a, b = self.sentence_of(pos)
        start, end = self.clause_start(pos), next((m.start() for m in CLAUSE.finditer(self.reply, pos, b)), b)
        inside = [m for m in self.mentions if a <= m[0] < b]
        for group in ([m for m in inside if start <= m[0] < pos][::-1], [m for m in inside if pos <= m[0] < end],
                      [m for m in inside if m[0] < pos][::-1], [m for m in inside if m[0] >= pos],
                      [] if same_sentence else [m for m in self.mentions if m[0] < a][::-1]):
            if group:
                return group[0][2]
        return self.hit_products[0] if len(self.hit_products) == 1 and not same_sentence else None


def own_prices(product: dict) -> list:
    """A product's prices: its price, each variant's ("Large: $15.99"), and the regular price of a sale."""
    raw = [product.get("price"), product.get("compare_at_price"),
           *re.findall(r"\$\s?(\d[\d,]*(?:\.\d+)?)", product.get("variants") or "")]
    return [v for r in raw if r and (v := decimal_of(str(r).replace(",", ""))) is not None]


def check_figures(c: Claims) -> list[str]:
    """Prices, quantities, durations, percentages and dates are in the knowledge; nothing lasts "forever"."""
    reasons = []
    for claim in c.claims:
        named, (a, b) = c.product_at(claim.start, same_sentence=True), c.sentence_of(claim.start)
        if claim.kind == "price" and (bound := c.priced(claim.start)):  # "Amber Noir is $5": its price only
            named, own, money = bound, [bound], []
        elif claim.kind == "price":  # any product named in the sentence may have this price
            own = [m[2] for m in c.mentions if a <= m[0] < b] or c.hit_products + [m[2] for m in c.mentions]
            money = [k for k in c.known if k.unit == "money"]
        if claim.kind == "price":
            prices = [Claim("price", "money", v, v) for p in own for v in own_prices(p)]
            said = [f"${price:.2f}".replace(".00", "")] if named and (price := decimal_of(named.get("price"))) else []
            if covered(claim, money + prices):
                continue
        elif covered(claim, c.known):
            continue
        else:
            row = "; ".join(str(v) for k, v in (named or {}).items() if k not in ("name", "sku", "price"))
            said = [f.text for f in extract(row) if f.unit == claim.unit]
        reasons.append(f"{claim.kind} {claim.text} for {named['name']}; catalog says {said[0]}" if said else
                       f"{claim.kind} {claim.text} is not in the knowledge it was drafted from")
    return reasons + [f"says '{m.group(0)}', which the knowledge doesn't" for m in VAGUE.finditer(c.reply)
                      if m.group(0).lower() not in c.knowledge]


def check_products(c: Claims) -> list[str]:
    """Capitalised names that look like products ("our Lavender Dreams candle") are catalog products."""
    names = {_norm(p.get("name", "")): p.get("name", "") for p in c.catalog if _norm(p.get("name", ""))}
    types, known, reasons = TYPE_NOUNS | {k.split()[-1] for k in names}, f" {_norm(c.knowledge)} ", []
    for m in NAME_LIKE.finditer(c.reply):
        words = m.group(0).split()
        while words and words[0].lower() in LEADING:
            words.pop(0)
        key = _norm(" ".join(words))
        if not key or overlaps(m.span(), c.mentions) or f" {key} " in known + " ".join(names) + " ":
            continue
        follow = re.match(r"[\s-]*([A-Za-z]*)", c.reply[m.end():]).group(1).lower().rstrip("s")
        best = process.extractOne(key, list(names), scorer=fuzz.ratio) or ("", 0, 0)
        if follow in types or len(set(key.split()) - {"and"}) > 1 and (key.split()[-1].rstrip("s") in types
                                                                       or best[1] >= 65):
            closest = f" (closest: {names[best[0]]})" if best[1] >= 60 else ""
            reasons.append(f"product '{' '.join(words)}' is not in the catalog{closest}")
    return reasons


def has_passed(when: Claim, today: date) -> bool:
    """The date is before today; a date without a year is read as the one nearest today
    ("December 5" on December 7 has passed, "January 20" on December 7 is next month)."""
    year, month, day = when.lo
    try:
        if year is not None:
            return date(year, month, day) < today
        nearest = min((date(y, month, day) for y in (today.year - 1, today.year, today.year + 1)),
                      key=lambda d: abs((d - today).days))
    except (TypeError, ValueError):
        return False
    return nearest < today


def check_availability(c: Claims) -> list[str]:
    """Stock claims match the product's status, restock dates its restock_date; discontinued is never promised."""
    reasons, told = [], set()
    for pattern, kind in ((IN_STOCK, "stock"), (RESTOCK, "restock")):
        for m in pattern.finditer(c.reply):
            p, (a, b) = c.product_at(m.start()), c.sentence_of(m.start())
            if not p or c.hedged(m.start()) or (p.get("name"), kind) in told:
                continue
            name, status, said = p.get("name", "that product"), p.get("status") or "unknown", m.group(0).lower()
            when = next((d for d in c.claims if d.kind == "date" and a <= d.start < b), None)
            due = [d for d in extract(str(p.get("restock_date", ""))) if d.kind == "date"]
            if kind == "stock" and status != "active":
                what = "in stock" if said == "in stock" else f"available ('{said}')"
                reason = f"says {name} is {what}, but it's {STATUS.get(status, 'not known to be in stock')}"
            elif status == "discontinued":
                reason = f"promises {name} ('{said}'), but it's discontinued"
            elif kind == "restock" and when and c.today and has_passed(when, c.today):
                reason = f"says {name} is back {when.text}, a date that has already passed"
            elif kind == "stock" or not when or due and (covered(when, due) or not covered(when, c.known)):
                continue  # nothing to check, the date matches, or check_figures already said it isn't known
            else:
                reason = f"says {name} is back {when.text}; " + (
                    f"the catalog says {p.get('restock_date')}" if due else "the catalog has no restock date")
            told.add((p.get("name"), kind))  # one reason per product and kind of claim
            reasons.append(reason)
    return reasons


def check_promises(c: Claims) -> list[str]:
    """Refunds, credit, discounts, free shipping, replacements and exceptions only as the knowledge states them."""
    reasons, spans = [], []
    for what, said, stated in PROMISES:
        for m in said.finditer(c.reply):
            if not c.hedged(m.start()) and not overlaps(m.span(), spans) and not stated.search(c.knowledge):
                spans.append(m.span())
                reasons.append(f"promises {what} ('{m.group(0).strip()}'), which the policies don't state")
    return reasons


def check_contacts(c: Claims) -> list[str]:
    """URLs and phone numbers only from the knowledge: a link or number in the customer's message is no shop fact
    ("tell them to call 1-900-…"). Email addresses also from the customer's message (their own, when it's known)."""
    own = c.customer_address if c.customer_address is not None else c.customer_text
    allowed, knowledge = (c.knowledge + " " + (own or "")).lower(), c.knowledge
    bare, masked = re.sub(r"https?://|www\.", "", knowledge), EMAIL.sub(" ", c.reply)
    phones = [d for m in PHONE.finditer(knowledge) if len(d := re.sub(r"\D", "", m.group(0))) >= 7]
    return [f"email {e} is not in the knowledge or the customer's message"
            for e in dict.fromkeys(EMAIL.findall(c.reply)) if e.lower() not in allowed] + [
        f"link {u} is not in the knowledge" for u in dict.fromkeys(m.group(0).rstrip(".,;:!?)") for m in
                                                               URL.finditer(masked))
        if re.sub(r"https?://|www\.", "", u.lower()).rstrip("/") not in bare] + [
        f"phone number {m.group(0).strip()} is not in the knowledge" for m in PHONE.finditer(masked)
        if len(n := re.sub(r"\D", "", m.group(0))) >= 7 and not any(d.endswith(n) or n.endswith(d) for d in phones)]


def check_privacy(c: Claims) -> list[str]:
    """Nothing of the prompt, no password or key, and no order number the customer didn't give (when their message
    is known)."""
    own = (c.customer_text or "").lower() + " " + c.knowledge
    return [f"{what} ('{m.group(0).strip()}')" for pattern, what in LEAKS if (m := pattern.search(c.reply))] + [
        f"mentions a {m.group(0).lower()}" for m in [SECRET.search(c.reply)]
        if m and m.group(0).lower() not in c.knowledge] + [
        f"mentions order {m.group('n')}, which isn't in the customer's message" for m in ORDER.finditer(c.reply)
        if c.customer_text is not None and m.group("n").lower() not in own]


def check_actions(c: Claims) -> list[str]:
    """The bot can't refund, send, forward or approve anything; nor does the owner's voice shout ("PWNED")."""
    return [f"claims to have done something only a person can do ('{m.group(0).strip()}')"
            for m in ACTIONS.finditer(c.reply) if not c.hedged(m.start())][:1] + [
        f"writes '{w}' in capitals, which the knowledge doesn't" for w in dict.fromkeys(SHOUT.findall(c.reply))
        if w.lower() not in c.knowledge][:1]


def check_person(c: Claims) -> list[str]:
    """A sign-off with the owner's name is fine; claiming to be a person is not."""
    return [f"claims to be a person ('{m.group(0)}')" for m in [PERSON.search(c.reply)] if m]


RULES: list[tuple[str, Callable[[Claims], list[str]]]] = [
    ("figures", check_figures), ("products", check_products), ("availability", check_availability),
    ("promises", check_promises), ("contacts", check_contacts), ("privacy", check_privacy), ("actions", check_actions),
    ("person", check_person)]


def check_claims(reply: str, *, hits: list, catalog: list[dict[str, str]], policies_text: str = "",
                 store_facts: dict | None = None, customer_text: str | None = None,
                 customer_address: str | None = None, today: date | None = None) -> list[str]:
    """Reasons the reply says something its knowledge doesn't back; [] when every claim checks out.
    ``customer_address``: the sender's email, the only address from outside the knowledge a reply may name."""
    try:
        reply = TRAILING_CURRENCY.sub(r"\2\1", str(reply or "").replace("’", "'").replace("‘", "'"))
        if len(reply) > MAX_CHARS:  # no support reply is this long; checking it would take seconds
            return [f"the reply is {len(reply)} characters, too long to check (limit {MAX_CHARS})"]
        rows = [{str(k): str(v) for k, v in r.items() if v is not None} for r in catalog or [] if isinstance(r, dict)]
        hits = [h for h in hits or [] if getattr(h, "kind", "") != "example"]
        facts = [{str(k): str(v) for k, v in f.items()} if isinstance(f := getattr(h, "facts", None), dict) else {}
                 for h in hits]
        mentions = find_mentions(reply, rows)
        rows_text = ["; ".join(f"{k}: {v}" for k, v in f.items()) for f in facts + [m[2] for m in mentions]
                     + [store_facts if isinstance(store_facts, dict) else {}]]
        raw = "\n".join([str(getattr(h, "text", "")) for h in hits] + [str(policies_text or "")] + rows_text)
        raw = TRAILING_CURRENCY.sub(r"\2\1", raw.replace("’", "'"))
        c = Claims(reply, raw.lower(), rows, [f for f in facts if f.get("name")],
                   None if customer_text is None else str(customer_text), mentions,
                   None if customer_address is None else str(customer_address), today=today,
                   claims=extract(reply))
        for sentence in split_sentences(reply):
            start = max(reply.find(sentence, c.sentences[-1][1] if c.sentences else 0), 0)
            c.sentences.append((start, start + len(sentence)))
        c.known = extract(raw) + [Claim("bare", "bare", v, v) for v in map(decimal_of, re.findall(NUM, raw)) if v is not None]
    except Exception as exc:  # noqa: BLE001 - the guard reports, it never raises
        return [f"the reply could not be checked ({type(exc).__name__})"]
    reasons: list[str] = []
    for name, rule in RULES:
        try:
            reasons += rule(c)
        except Exception as exc:  # noqa: BLE001
            reasons.append(f"the {name} check failed on this reply ({type(exc).__name__})")
    return list(dict.fromkeys(reasons))
