"""Prompt-injection detection: instructions aimed at the drafting model, not at the shop.

One of the pipeline's signals (``responder.understand.signals`` calls ``injection_attempt`` on the customer's
cleaned words); routing holds a hit for review with the matched words as its reason. Disguises
are undone before a second look: look-alike letters from other scripts, digits for letters
("1gn0r3") and base64-encoded instructions. A hit is a reason to show the owner, never proof:
the guard still checks every claim in the draft whatever the signals say.
"""
from __future__ import annotations

import base64
import binascii
import re


def _quoted(match: re.Match) -> str:
    return "'" + re.sub(r"\s+", " ", match.group(0)).strip()[:80] + "'"


# Prompt injection: instructions aimed at the drafting model, not at the shop.
INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:the\s+|your\s+|these\s+|those\s+)?"
    r"(?:previous|prior|above|earlier|preceding|system|original|initial|existing|current)?\s*(?:instructions?|prompts?"
    r"|rules|guidelines|guardrails|programming|constraints|system\s+message)\b"
    r"|\bsystem\s*prompt\b|\b(?:initial|original|hidden|secret|internal)\s+(?:prompt|instructions)\b"
    r"|\b(?:reveal|show|print|repeat|output|display|share|tell|give|what\s+(?:is|are))\s+(?:me\s+)?(?:your|the)\s+"
    r"(?:system\s+)?(?:prompt|instructions(?!\s+(?:for|on|to|about|with|regarding))|system\s+message)"
    r"|\b(?:repeat|print|output)\s+(?:everything|all|the\s+(?:text|words))\s+above\b"
    r"|(?m:^[ \t>]*[\[<#*]*\s*(?:system|assistant|developer|ai)\s*[\]>*]*\s*:)"
    r"|<\|?(?:im_start|im_end|system|endoftext)\|?>|\[/?INST\]|<<SYS>>"
    r"|\byou\s+are\s+now\s+(?:an?\s+(?!customer)|in\b|dan\b|free\b|unrestricted|no\s+longer|acting|operating)"
    r"|\bfrom\s+now\s+on,?\s+you\s+(?:are|will|must|should)\b|\bpretend\s+(?:to\s+be|you\s+are|that\s+you)\b"
    r"|\bact\s+as\s+(?:if\s+you|an?\s+(?:ai|assistant|unrestricted|different|developer))\b"
    r"|\b(?:developer|god|dan|jailbreak|unrestricted)\s+mode\b|\bjailbreak|\bdo\s+anything\s+now\b"
    r"|\bnew\s+instructions?\s*:|\bignorier\w*\s+(?:\w+\s+){0,3}(?:anweisungen|instruktionen)"
    r"|\bignor\w*\s+(?:\w+\s+){0,5}instructions\b"
    # Published attack forms: PromptInject's "… and just print \"…\"", "STOP EVERYTHING!!! NOW!!!", Perez & Ribeiro's
    # "Ignore the above and say …", a "### SYSTEM OVERRIDE ###" banner.
    r"|\b(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?)?the\s+above\b(?!\s+(?:email|message|mail|note|order|address))"
    r"|\bjust\s+(?:print|say|output|write|reply\s+with|respond\s+with)\s*:?\s*[\"'“«]"
    r"|\bstop\s+everything\b|(?m:^[ \t>]*#{2,}[ \t]*(?:system|admin|developer|root)\b)|\bsystem\s+override\b"
    r"|\b(?:ignora|olvida)\w*\s+(?:\w+\s+){0,3}(?:instrucciones"
    r"|istruzioni)"
    # Words for the model rather than the shop: notes to it, its rules, what to put in "your answer", role-play.
    r"|\b(?:note|message|instructions?|reminder)\s+(?:to|for)\s+(?:the\s+)?(?:ai|assistant|bot|chatbot|model|llm|gpt)\b"
    r"|\b(?:assistant|chatbot|llm|gpt)\s*:|(?-i:\bSYSTEM\b)\s*:|\bsystem\s+(?:note|message|override|update|notice)\s*:"
    r"|\b(?:tell|inform|assure|promise|reply\s+to|respond\s+to|write\s+to)\s+(?:the|this)\s+customer\b"
    r"(?!\s+(?:service|support|care))"
    r"|\b(?:write|say|include|put|add|paste|use)\s+(?:[\"'][^\"'\n]{1,80}[\"']|(?:this|the|these)\s+(?:exact\s+)?"
    r"(?:link|url|phrase|sentence|words?|text|code|line))\s+in\s+your\s+(?:answer|reply|response|email)"
    r"|\b(?:reply|respond|answer|write)\b[^.\n]{0,30}\b(?:in\s+all\s+caps|(?:with|using)\s+(?:only|just)\s+"
    r"(?:the\s+)?(?:word|phrase))|\b(?:rules|instructions|guidelines|prompt)\s+(?:were\s+you|you\s+were|have\s+you"
    r"\s+been|did\s+you\s+get)\s+(?:given|told|set)|\brole[- ]?play\b|\bstay\s+in\s+character\b"
    r"|<\s*/?\s*(?:facts?|customer_message|history)\b|\b(?:print|show|repeat|output|reveal|dump)\s+(?:me\s+)?"
    r"(?:the\s+|your\s+)?(?:facts?|context|sources?)\s+(?:block|section|verbatim)"
    # Sending elsewhere, and text dressed up as a tool call.
    r"|\b(?:send|forward|copy|cc|bcc)\b[^.\n]{0,30}\b(?:this|your|the)\s+(?:reply|answer|response)\b[^.\n]{0,30}\bto\b"
    r"|\bb?cc\s*:\s*[\w.+-]+@|\"(?:tool_calls?|function_call|function|arguments)\"\s*:|\bfunction_call\s*:"
    r"|\b[a-z]+_[a-z_]+\s*\(\s*\w+\s*=", re.I)
# Disguises, undone before a second look: look-alike letters from other scripts, digits for letters ("1gn0r3"),
# and instructions in base64 (zero-width characters are already gone in ``_clean``).
_LOOKALIKES = str.maketrans("аеорсухіјѕԁһӏАЕОРСХІЈЅТНКМВαεοιρτνκμΑΕΟΙΡΤΝΚΜΒΧ",
                            "aeopcyxijsdhlAEOPCXIJSTHKMBaeoiptvkmAEOIPTNKMBX")
_LEET = str.maketrans("0134578@$", "oieastbas")
_MIXED = re.compile(r"\b(?=\w*[a-z])(?=\w*\d)\w+\b", re.I)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")


def injection_attempt(text: str) -> str | None:
    """Instructions aimed at the drafting model, as written, disguised or base64-encoded; None if there are none."""
    plain = _MIXED.sub(lambda m: m.group(0).translate(_LEET), text.translate(_LOOKALIKES))
    for how, variant in (("", text), (" (disguised)", plain), (" (base64)", _decoded(text))):
        if variant and (m := INJECTION.search(variant)):
            return f"prompt injection{how}: {_quoted(m)}"
    return None


def _decoded(text: str) -> str:
    """The readable text of any base64 blobs in ``text``."""
    out = []
    for blob in _BASE64.findall(text)[:20]:
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if decoded.isprintable() or decoded.replace("\n", "").isprintable():
            out.append(decoded)
    return "\n".join(out)
