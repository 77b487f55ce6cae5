"""Tone rules: safe fixes applied, the rest reported; whatever passes also passes the eval scorer's tone check."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.draft.tone import (
    TONE_DEFAULTS,
    apply_tone,
    sms_segments,
    split_sentences,
)

# The eval scorer's tone patterns (shared/eval/score.py), copied as test oracles, not imported.
SCORER_BANNED = re.compile(r"^\s*(certainly|of course|absolutely|great question|sure thing|i hope (this|you)|thank you "
                           r"for (reaching|contacting)|dear )", re.I)
SCORER_UNCONTRACTED = re.compile(r"\b(we will|we are|cannot|do not|does not|you will|is not|are not|we would|i am"
                                 r"|it is not|we have not|did not)\b", re.I)


def scorer_sentences(text: str) -> int:
    body = re.split(r"\n\s*(--|—|–)?\s*\n", text)[0]
    return len([p for p in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", body.strip()) if re.search(r"[A-Za-z]", p)])


def scorer_passes(text: str, max_len: int | None = None) -> bool:
    return not (SCORER_BANNED.search(text) or SCORER_UNCONTRACTED.search(text) or scorer_sentences(text) > 4
                or (max_len and len(text) > max_len))


def tone(text: str, channel: str = "email", frustrated: bool = False, **kw):
    return apply_tone(text, channel=channel, frustrated=frustrated, **kw)


OPENERS = ["Certainly!", "Of course!", "Great question!", "Absolutely!", "Sure thing!", "I hope this finds you well.",
           "I hope this email finds you well!", "Thank you for reaching out.", "Thanks for reaching out,",
           "Thank you for reaching out about your order!", "Thank you for contacting us.", "Certainly! Of course,"]


@pytest.mark.parametrize("opener", OPENERS)
def test_banned_openers_are_dropped_and_the_reply_recapitalised(opener):
    result = tone(f"{opener} we ship to Canada for $18.")
    assert result.text == "We ship to Canada for $18."
    assert result.fixes[0].startswith("dropped the opener") and not result.violations
    assert scorer_passes(result.text)


def test_openers_after_a_greeting_and_dear_are_fixed():
    assert tone("Hi Sam,\n\nCertainly! It's $7.").text == "Hi Sam,\n\nIt's $7."
    result = tone("Dear Sam,\n\nIt's $7.")
    assert result.text == "Hi Sam,\n\nIt's $7." and "changed 'Dear' to 'Hi'" in result.fixes


def test_an_opener_that_carries_the_answer_is_reported_not_dropped():
    result = tone("Absolutely!")
    assert result.text == "Absolutely!" and result.violations == ["opens with 'Absolutely'"]
    result = tone("Absolutely not, we don't ship to Mars.")
    assert result.text.startswith("Absolutely not") and result.violations == ["opens with 'Absolutely'"]


CONTRACTIONS = [
    ("We will ship it today.", "We'll ship it today."),
    ("Please do not burn it for more than 4 hours.", "Please don't burn it for more than 4 hours."),
    ("We cannot ship to Mars and we can not ship to Venus.", "We can't ship to Mars and we can't ship to Venus."),
    ("It is in stock and it is 12 oz.", "It's in stock and it's 12 oz."),
    ("We are sorry; you are right.", "We're sorry; you're right."),
    ("I am sure it does not leak.", "I'm sure it doesn't leak."),
    ("It is not here, that is odd, there is time.", "It's not here, that's odd, there's time."),
    ("It will not fade.", "It won't fade."),
    ("I will check and you will hear back.", "I'll check and you'll hear back."),
    ("We have shipped it.", "We've shipped it."),
    ("We have already sent it.", "We've already sent it."),
    ("We have three colors.", "We have three colors."),     # "have" as a verb stays
    ("WE WILL SHIP IT.", "WE'LL SHIP IT."),
    ("Is it in stock? It is.", "Is it in stock? It is."),   # nothing to lean on at the end
    ("You can not only burn it but gift it.", "You can not only burn it but gift it."),
    ("We would love that; we are not sure it did not break.", "We'd love that; we're not sure it didn't break."),
]


@pytest.mark.parametrize("before, after", CONTRACTIONS)
def test_contractions_keep_capitalisation_and_meaning(before, after):
    assert tone(before).text == after


def test_an_uncontracted_form_that_cannot_be_fixed_is_a_violation():
    result = tone("That's just who we are.")
    assert result.text == "That's just who we are." and result.violations == ["uncontracted 'we are' left as written"]


MARKDOWN = [
    ("**Shipping** is $7.", "Shipping is $7."),
    ("# Shipping\nIt's $7.", "Shipping. It's $7."),
    ("Options:\n- free over $60\n- flat $7 otherwise", "Options: Free over $60. Flat $7 otherwise."),
    ("See [our returns page](https://shop.example/returns).", "See our returns page (https://shop.example/returns)."),
    ("It's *really* `great`.", "It's really great."),
]


@pytest.mark.parametrize("before, after", MARKDOWN)
def test_markdown_is_flattened_on_sms_and_whatsapp_only(before, after):
    assert tone(before, "sms").text == after
    assert "removed markdown for whatsapp" in tone(before, "whatsapp").fixes
    assert tone(before, "email").text == before.strip()


def test_sms_stays_gsm7_when_only_punctuation_was_fancy():
    result = tone("It’s $7 – and free over $60…", "sms")
    assert result.text == "It's $7 - and free over $60..." and sms_segments(result.text) == 1


SENTENCES = [
    ("Burn it 4 hours, e.g. Saturday. Then trim the wick.", 2),
    ("It costs $4.50. It's 3.5 in wide.", 2),
    ("Mr. Lee poured it. Dr. Chen boxed it.", 2),
    ("See https://shop.example/a.b?c=1 for details. Thanks!", 2),
    ("It's i.e. Cedar. Done.", 2),
    ("One.\nTwo\n\nThree!", 3),
    ("Ask for No. 5. It's lovely.", 2),
]


@pytest.mark.parametrize("text, count", SENTENCES)
def test_sentence_counting_ignores_abbreviations_decimals_and_urls(text, count):
    assert len(split_sentences(text)) == count


def test_sentence_limits():
    four = "It's $7. It ships in 2 days. It's tracked. It's boxed well."
    assert tone(four).violations == ["4 sentences; the limit is 3"]
    assert tone(four, needs_detail=True).violations == []
    assert tone(four + " Enjoy!", needs_detail=True).violations == ["5 sentences; the limit is 4"]
    assert tone("It's $7. It ships.\n\nThanks,\nMaya").violations == []  # a sign-off is no sentence
    plain = "Ask Mr. Lee. Or Mrs. Lee. Or Dr. Lee. It's $7."  # 4 sentences, but 7 to a plain splitter
    assert tone(plain, needs_detail=True).violations[0].startswith("7 sentences counted plainly")


SEGMENTS = [("", 0), ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3), ("€" * 80, 1), ("€" * 81, 2),
            ("[" * 153, 2), ("é" * 160, 1), ("ł" * 70, 1), ("ł" * 71, 2), ("ł" * 134, 2), ("ł" * 135, 3),
            ("😀" * 35, 1), ("😀" * 36, 2), ("a" * 300 + "😀", 5)]


@pytest.mark.parametrize("text, segments", SEGMENTS)
def test_sms_segments(text, segments):
    assert sms_segments(text) == segments


def test_long_sms_is_reported():
    result = tone("It's in stock. " * 25, "sms")
    assert result.violations[-1] == "SMS reply is 1 segment over the limit (3 segments; the limit is 2)"
    assert tone("It's in stock. " * 25, "email").violations == ["25 sentences; the limit is 3"]
    emoji = tone("It's in stock 😀 and ships today, tracked all the way to your door. " * 2, "sms")
    assert emoji.violations == ["SMS reply is 1 segment over the limit (3 segments; the limit is 2)"]


@pytest.mark.parametrize("first", ["I'm sorry it arrived late.", "Sorry about the wait!", "I hear you.",
                                   "I understand, that's a pain.", "That's frustrating, I know.", "Apologies, my bad."])
def test_a_frustrated_customer_acknowledged_first_gets_no_extra_apology(first):
    result = tone(f"{first} It ships tomorrow.", frustrated=True)
    assert result.text == f"{first} It ships tomorrow." and result.violations == []


def test_a_missing_acknowledgement_is_added_when_it_fits():
    result = tone("hi Sam,\nit ships tomorrow.", frustrated=True)
    assert result.text == "hi Sam,\nI'm sorry about the trouble. It ships tomorrow."
    assert result.fixes == ["added an acknowledgement: 'I'm sorry about the trouble.'"]
    three = tone("It ships tomorrow. It's tracked. It's boxed.", frustrated=True)
    assert three.violations == [] and three.text.startswith("I'm sorry about the trouble. It ships")
    long = tone("a" * 290 + ".", "sms", frustrated=True)
    assert long.text == "a" * 290 + "." and long.violations == [
        "frustrated customer but the reply doesn't acknowledge it first"]


def test_whitespace_is_collapsed():
    assert tone("It's  $7.\n\n\n\nThanks!  ").text == "It's $7.\n\nThanks!"
    assert tone("It's\n\n$7 .", "sms").text == "It's $7 ."


def test_defaults_are_data():
    assert TONE_DEFAULTS.max_sentences == 3 and TONE_DEFAULTS.contractions["we will"] == "we'll"
    assert "Certainly" in TONE_DEFAULTS.banned_openers and TONE_DEFAULTS.sms_max_segments == 2


FRAGMENTS = ["Certainly!", "Of course,", "Thank you for reaching out.", "Dear Sam,", "I hope this finds you well.",
             "We will ship it.", "It is not here.", "We cannot do that.", "I am sure.", "Do not worry.",
             "It's $4.50.", "e.g. Cedar.", "Mr. Lee said so.", "**Bold** move.", "- a bullet", "We have shipped it.",
             "Sorry about that.", "It's 3.5 in wide.", "😀", "See https://x.example/a.b.", "we are", "did not",
             "Is it? It is.", "We would love to.", "\n\n", "It’s fine – really…", "Hi Sam!", "Hi Sam,\n\n",
             "\n\nThanks,\nMaya", "Absolutely not.", "Great question! I hope you like it.", "— Maya"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12), st.sampled_from(["email", "sms", "whatsapp"]),
       st.booleans(), st.booleans())
def test_whatever_passes_tone_passes_the_scorer(parts, channel, frustrated, detail):
    result = tone(" ".join(parts), channel, frustrated, needs_detail=detail)
    if not result.violations:
        assert scorer_passes(result.text, 306 if channel == "sms" else None), result
        if channel == "sms":
            assert sms_segments(result.text) <= 2


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=400), st.none()), st.one_of(st.text(max_size=10), st.none()), st.booleans(),
       st.booleans())
def test_never_raises(text, channel, frustrated, detail):
    result = apply_tone(text, channel=channel, frustrated=frustrated, needs_detail=detail)
    assert isinstance(result.text, str) and isinstance(result.violations, list)


def test_iso_dates_are_written_in_words_whoever_drafted_them():
    """A model reads the catalog's "2027-01-15" and writes it back; customers read "January 15, 2027"
    (the year only when it isn't this one). A date inside a code or a timestamp is left alone."""
    from datetime import date

    dec_7 = date(2026, 12, 7)
    result = apply_tone("We expect Orchard Morning back on 2027-01-15, and Winter Pine on 2026-12-20.",
                        channel="email", frustrated=False, today=dec_7)
    assert result.text == "We expect Orchard Morning back on January 15, 2027, and Winter Pine on December 20."
    assert "wrote the date 2027-01-15 as 'January 15, 2027'" in result.fixes
    for kept in ("Your code is WW-2026-12-05.", "Logged at 2026-12-05T10:00.", "Batch 2026-13-45 is fine."):
        assert apply_tone(kept, channel="email", frustrated=False, today=dec_7).text == kept
