"""The claim guard's pattern tables: what a vague, promised, leaked or contact claim looks like.

Data for ``responder.decide.guard`` only (its checks read these); kept apart so the checks stay short.
Each table names what it catches in the owner's words, e.g. a promise the policies must state.
"""
from __future__ import annotations

import re

VAGUE = re.compile(r"\b(forever|indefinitely|eternal(?:ly)?|endless(?:ly)?|infinite(?:ly)?|a lifetime|unlimited"
                   r"|never (?:burns?|runs?|wears?) out)\b", re.I)
# Earlier in a claim's clause, these make it no claim: "isn't in stock", "I'll check whether it's available".
HEDGE = re.compile(r"\b(?:not|no longer|never|cannot|neither|nor|without|unable|whether|if|once|when|until)\b|n't\b",
                   re.I)
CLAUSE = re.compile(r"[,;:—–()]|\s-\s|\b(?:but|however|although|though|while|whereas|unlike|instead)\b", re.I)
IN_STOCK = re.compile(
    r"(?<!back )\bin stock\b(?!\s+(?:on|by|from|around|again|soon|next|after|starting)\b)|\b(?:available|ready) "
    r"(?:now|today|right now|right away|to ship|immediately)\b|\b(?:is|are|it's|they're|it is|they are) (?:still |"
    r"currently |also )?available\b(?!\s+(?:(?:for|as)\s+(?:a\s+)?pre|on\b|from\b|again\b|starting\b|after\b|by\b"
    r"|soon\b))|\bwe (?:still |currently )?(?:have|stock|carry) (?:it|them|one|some|plenty|a few)\b|\bwe've got "
    r"(?:it|them|one|some)\b|\bships? (?:today|right away|immediately|same[- ]day|tomorrow)\b", re.I)
RESTOCK = re.compile(r"\b(?:back in stock|in stock again|restock(?:ed|ing|s)?|back on (?:the )?shel(?:f|ves)|be "
                     r"(?:back|available|in stock)|(?:available|in stock|ships?|shipping|arrives?|expected|expect "
                     r"(?:it|them|more))\s+(?:again\s+)?(?:on|by|from|around|starting|after|in|soon|next)\b"
                     r"|coming back|bring(?:ing)? (?:it|them) back|(?:can|could|will|we'll|I'll|happy to) (?:order|"
                     r"get|make|send|ship|reserve|hold|pour) (?:it|them|one|more|another|yours|some)\b|\bpre-?orders?"
                     r"|\border (?:it|one|them) (?:now|today))\b", re.I)
STATUS = {"out_of_stock": "out of stock", "discontinued": "discontinued", "preorder": "pre-order only"}
PROMISES = [(what, re.compile(said, re.I), re.compile(stated)) for what, said, stated in (  # what the policies state
    ("a full refund", r"\bfull refund|\brefund (?:you |it |the \w+ )?(?:in full|completely|fully)|\ball (?:of )?your "
                      r"money back", r"full refund|refund(?:ed)? in full"),
    ("a refund", r"\brefund|\bmoney back|\breimburse", r"refund"),
    ("store credit", r"\bstore credit|\bcredit (?:your|you|it)\b|\baccount credit", r"credit"),
    ("a discount", r"\bdiscount|\b\d+\s?% off|\bpercent off|\bcoupon|\bpromo code", r"discount|% off|coupon"),
    ("free shipping", r"\bfree (?:shipping|delivery|postage|returns?)|\bship (?:it |them )?(?:for )?free\b|\bcover "
                      r"(?:the )?(?:return )?shipping|\bprepaid (?:return )?label",
     r"free (?:shipping|delivery)|shipping[^.]{0,40}\bfree\b"),
    ("a replacement", r"\breplacement|\breplace (?:it|them|the|your)\b|\bsend (?:you )?(?:a )?(?:new|another) ",
     "replac"),
    ("an exception", r"\bexception\b|\bwaive|\bjust this once|\bbend the rules|\bextend (?:the|your) (?:return )?"
                     r"window", r"exception|waive"),
    ("something free", r"\bfor free\b|\b(?:is|are|it's|they're|be|totally|completely|100%|all)\s+free\b(?!\s+(?:on|"
                       r"over|of|from|to|shipping|delivery|returns?)\b)|\bfree (?:candles?|items?|gifts?|products?|"
                       r"upgrades?|of charge)\b|\bno (?:charge|cost|payment)\b|\bat no (?:extra )?cost\b"
                       r"|\bcomplimentary\b|\bon the house\b|\b(?:kostenlos|gratis|gratuit|gratuito)\b",
     r"for free|(?:is|are) free\b(?! (?:on|over|of|from))|free (?:candle|item|gift|product|upgrade|of charge)|no charge"
     r"|at no (?:extra )?cost|complimentary|on the house"),
    ("faster delivery", r"\bnext[- ]day\b|\bovernight\b|\bsame[- ]day (?:delivery|shipping)|\bexpress (?:shipping|"
                        r"delivery)|\bexpedited\b|\b(?:arrives?|deliver(?:ed)?|get there|be there|reach you|have it)"
                        r"\s+(?:by\s+)?(?:tomorrow|today|tonight)\b",
     r"next[- ]day|overnight|same[- ]day|express (?:shipping|delivery)|expedit"),
    ("a guarantee", r"\bguarantee", r"guarantee"))]
# Things only a person can do: a draft that says they're done is never true ("I've issued your refund").
ACTIONS = re.compile(
    r"\b(?:I|we)(?:'ve| have)?\s+(?:just\s+|already\s+|now\s+)?(?:processed|issued|approved|applied|refunded|credited|"
    r"cancell?ed|upgraded|sent|forwarded|copied|cc'?d|bcc'?d|emailed|added|waived|reserved|changed|updated|escalated|"
    r"notified)\b|\b(?:refund|discount|code|credit|replacement|order|exchange|return|request|copy|reply|email)\s+(?:\w+"
    r"\s+){0,5}?(?:has been|have been|was|is now|is being)\s+(?:approved|processed|issued|applied|confirmed|cancell?ed|"
    r"sent|forwarded|refunded|credited|waived)\b|^\s*(?:done|confirmed|approved)\b\s*[!.:,—-]", re.I | re.M)
TRAILING_CURRENCY = re.compile(r"(\d[\d.,]*)\s?([€£])")  # "200 €" is read as "€200"
SHOUT = re.compile(r"\b[A-Z]{4,}\b")
SECRET = re.compile(r"\b(?:password|passcode|passwd|api[ _-]?key|secret key|access token|credentials)\b", re.I)
# Between a product's name and a price that is its price: "Amber Noir is $48", "Amber Noir (now $48)".
PRICED = re.compile(r"(?:\s*(?:is|are|was|costs?|sells?|goes|priced|retails|runs?|for|at|just|only|now|currently|still"
                    r"|about|around|:|\(|—|–|-))*\s*")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\"']+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|co|io|shop|store"
                 r"|example|uk|ca|us|de|fr|au|info|biz|app|site)\b(?:/[^\s<>()\"']*)?", re.I)
PHONE = re.compile(r"(?<![\w/-])(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?!\w)")
ORDER = re.compile(r"(?:\border\s*(?:number|no\.?|num)?\s*:?\s*#?|(?<![\w&])#)\s*(?P<n>[A-Z]{0,3}-?\d{3,}[\w-]*)", re.I)
LEAKS = [(re.compile(p, re.I | re.M), what) for p, what in (
    (r"\bsystem prompt\b|\bdeveloper (?:message|prompt)\b|\bmy (?:instructions|prompt|guidelines|rules|programming)\b"
     r"|\bhere (?:are|is) my (?:rules|instructions|prompt)\b|\bI (?:was|am|have been|'ve been) (?:told|instructed|"
     r"programmed|prompted|configured)\b|\bas an AI\b|\blanguage model\b|\b(?:previous|above|prior) instructions\b",
     "reveals its instructions"),
    (r"\{\{|\}\}|\{%|%\}|<\|\w+\|>|\[(?:customer|your|first|store|owner)[ _]?name\]", "has template remnants"),
    (r"\"(?:role|content|system|instructions|messages)\"\s*:|^\s*(?:system|assistant|user)\s*:|<\s*/?\s*(?:facts?|"
     r"customer_message|history|turn|examples?)\b|\bsource\s*=\s*\"", "quotes prompt text"))]
PERSON = re.compile(r"\bI(?:'m| am)\s+(?:a\s+)?(?:real|actual|live)\s+(?:person|human)|\bI(?:'m| am)\s+(?:a\s+)?human\b"
                    r"|\bI(?:'m| am)\s+not\s+(?:a\s+|an\s+)?(?:bot|robot|ai|machine|computer|program|automated)\b"
                    r"|\bnot an? (?:bot|robot)\b|\b(?:personally|myself) typing\b|\btyping this (?:myself|personally)\b"
                    r"|\bthis is \w+,? personally\b|\ba real (?:person|human) (?:here|typing|writing)\b", re.I)
NAME_LIKE = re.compile(r"\b[A-Z][a-z][\w'-]*(?:(?:[ \t]+|[ \t]*&[ \t]*|[ \t]+(?:and|of|de|la|le|du)[ \t]+)"
                       r"[A-Z][a-z][\w'-]*)*")
TYPE_NOUNS = set("candle mug bowl plate vase cup tin jar set kit box bundle soap diffuser spray blend collection "
                 "edition trimmer snuffer melt scent glaze".split())
LEADING = set("our the a an this that these those yes no hi hello hey thanks thank sorry unfortunately also and but so "
              "try both either sadly just please dear it's we'll we're you'll we've if when for with from in on at as "
              "all each my your here there what which while because then happy glad plus or however good great of "
              "january february march april may june july august september october november december".split())
