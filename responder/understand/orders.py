"""Order-specific intent: a message about one particular order, which only its order data answers.

One of the pipeline's signals (``responder.understand.signals`` calls ``about_an_order`` on the
customer's new words and subject). "Where is order #1043?", "cancel my order", "I was charged
twice", "you sent me the wrong pillows": nothing true can be said about these from the FAQ or the
catalog, so routing hands them to the owner with a holding reply. A general question that merely
mentions orders ("how do I track my order?", "how long do refunds usually take?") is not one:
the FAQ answers it. Each rule is (what the customer wants, pattern); the first that matches is
the reason, quoted; the order number comes last, so the reason says what the customer wants.
"""
from __future__ import annotations

import re

_ORDER = r"(?:order|purchase|package|parcel|shipment|delivery|refund)"
_REFUND = r"(?:refund|reimbursement|restitution|rebate|compensation|money\s+back)"
RULES: list[tuple[str, re.Pattern]] = [(what, re.compile(pattern, re.I)) for what, pattern in [
    ("a cancellation", r"\bcancel\w*\s+(?:my|the|this|our)\s+(?:\w+\s+)?(?:order|purchase)\b"
                       r"|\bcancel\w*\s+(?:order|purchase)\s*(?:no\.?|number)?\s*#?\s*\d"
                       r"|\b(?:my|the|this|our)\s+(?:\w+\s+)?(?:order|purchase)\b[^.?!]{0,40}\bcancel"),
    ("a change to the order", r"\b(?:change|update|correct|fix|edit|modify|amend)\w*\s+(?:my|the|our)\s+"
                              r"(?:shipping\s+|delivery\s+|billing\s+)?(?:address|order)\b"
                              r"|\b(?:wrong|old|incorrect)\s+(?:shipping\s+|delivery\s+)?address\b"
                              r"|\b(?:add|remove)\w*\s+(?:[\w-]+\s+){0,4}(?:to|from)\s+(?:my|the|this|our)\s+"
                              r"(?:order|purchase)\b"),
    ("a wrong or missing item", r"\b(?:wrong|incorrect)\s+(?:item|size|colou?r|product|order|thing|one|scent|flavou?r"
                                r"|style|model|variant|version|pattern|design|print|fit|length|width)s?\b"
                                r"|\b(?:sent|got|received|delivered)\s+(?:me\s+|us\s+)?[^.?!]{0,60}\binstead\b"
                                r"|\bbut\s+(?:i|we)\s+ordered\b"
                                r"|\b(?:didn'?t|did\s+not|doesn'?t|does\s+not)\s+(?:come|arrive)\s+with\b"
                                r"|\b(?:missing|wasn'?t|weren'?t)\s+(?:from|in)\s+(?:the|my)\s+(?:box|package|parcel|order)"),
    ("where the order is", rf"\bwhere(?:'s|\s+is|\s+are)\s+my\s+(?:\w+\s+)?{_ORDER}s?\b"
                           rf"|\b(?:status|progress|eta)\s+of\s+(?:my|the|our|an?)?\s*(?:\w+\s+)?{_ORDER}\b"
                           r"|\b(?:my\s+|the\s+)?order\s+status\b"
                           rf"|(?m:^\W*(?:track|tracking|trace)\s+(?:my\s+)?(?:order|package|parcel|shipment|purchase)\W*$)"
                           rf"|\btrack\w*\s+(?:my|our)\s+(?:last|latest|recent|new|current)\s+{_ORDER}\b"
                           rf"|\b(?:updates?|news|info|word|anything\s+new|progress)\s+(?:on|about|regarding|for|with)\s+"
                           rf"(?:my|our)\s+(?:\w+\s+)?(?:{_ORDER}|rebate|reimbursement|restitution|compensation)\b"
                           r"|\bdid\s+my\s+(?:\w+\s+){1,2}(?:ship|arrive|go\s+out)\b"
                           rf"|\b(?:has|have|is|are)\s+(?:my|our)\s+(?:\w+\s+)?{_ORDER}s?\s+(?:shipped|been\s+(?:shipped|sent|"
                           r"dispatched|delivered|posted)|arrived|gone\s+out|left|dispatched|on\s+(?:its|their|the)\s+way)\b"
                           r"|\bmy\s+(?:\w+\s+){1,2}(?:never|hasn'?t|has\s+not|didn'?t|did\s+not|still\s+hasn'?t)\s+"
                           r"(?:arrived?|come|came|shipped|ship|turned\s+up|been\s+(?:delivered|shipped))"
                           r"|\bnever\s+(?:came|arrived|showed\s+up|turned\s+up)\b"
                           r"|\b(?:left|dropped|dumped)\s+(?:it\s+|them\s+|my\s+[\w ]{1,30}?)?(?:at|on|outside|by)\s+"
                           r"the\s+(?:curb|kerb|door|porch|street|gate|road)"),
    ("a refund for an order", rf"\b(?:waiting|wait)\s+(?:for|on)\s+(?:a|my|the|our)\s+{_REFUND}"
                              rf"|\bexpect\w*\s+(?:a|my|the|our)\s+{_REFUND}|\b{_REFUND}\s+of\s+(?:\$|£|€)?\s?\d[\d.,]*"
                              rf"|\bwhere(?:'s|\s+is)\s+(?:my|our)\s+(?:{_REFUND}|money)"
                              rf"|\b(?:status\s+of|track|trace)\s+(?:my|the|our)\s+(?:\w+\s+)?{_REFUND}"
                              rf"|\b(?:my|the|our)\s+{_REFUND}\s+status\b|\b(?:my|our)\s+{_REFUND}\s+(?:hasn'?t|has\s+not|never)"
                              rf"|\b(?:haven'?t|have\s+not|never)\s+(?:got|gotten|received|seen)\s+(?:a|my|the|our)\s+{_REFUND}"),
    ("a payment problem", r"\b(?:charged|billed)\s+(?:me\s+|us\s+)?(?:twice|two\s+times|double|three\s+times)"
                          r"|\b(?:two|2|three|duplicate|double)\s+charges\b|\bdouble[- ]charged?\b"
                          r"|\bdeclin\w*\s+(?:my|our|the)\s+card|\b(?:card|payment)\s+(?:was|is|keeps|kept|got)\s+"
                          r"(?:getting\s+|being\s+)?(?:declined|rejected|refused)"
                          r"|\b(?:can'?t|cannot|can\s+not|unable\s+to)\s+(?:make\s+(?:a|the|my)\s+)?pay(?:ment)?\b"
                          r"|\b(?:online\s+)?payments?\s+(?:issue|problem|failure|error|trouble)s?\b"
                          r"|\b(?:issue|problem|error|trouble)s?\s+with\s+(?:my\s+|the\s+|an?\s+)?(?:online\s+)?payments?\b"),
    ("an order number", r"(?:\b(?:order|purchase|invoice)\s*(?:no\.?|number|num|nr\.?)?\s*#?\s*|#\s?)\d{3,}\b"),
]]
# What reports something gone wrong (the holding reply says sorry), not a request to change an order.
PROBLEMS = ("a wrong or missing item", "where the order is", "a refund for an order", "a payment problem")


def reports_a_problem(reason: str | None) -> bool:
    """Whether an ``about_an_order`` reason is about something gone wrong."""
    return bool(reason) and any(f"({what})" in reason for what in PROBLEMS)


def about_an_order(text: str) -> str | None:
    """"about a particular order (a cancellation): 'cancel my order'", or None for a general question."""
    for what, pattern in RULES:
        if m := pattern.search(text or ""):
            return f"about a particular order ({what}): '{' '.join(m.group(0).split())[:80]}'"
    return None
