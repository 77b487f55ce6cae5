"""parse_email on hand-written fixtures (tests/fixtures/email) and on hostile input."""
from __future__ import annotations

import hashlib
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from channels.email.parse import (  # noqa: E402
    ParsedEmail,
    extract_new_text,
    normalize_subject,
    parse_email,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "email"


def fixture(name: str) -> ParsedEmail:
    return parse_email((FIXTURES / f"{name}.eml").read_bytes())


def plain(body: str, headers: str = "From: a@example.com\r\n") -> bytes:
    return (headers + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()


def test_headers_are_decoded_and_normalised():
    p = fixture("multipart_alternative")
    assert p.message_id == "20240503101500.ABC123@mail.example.org"  # brackets and blanks stripped
    assert p.subject == "Frage zu meiner Bestellung – Größe M"  # RFC 2047, folded, adjacent words joined
    assert (p.from_name, p.from_address) == ("Anna Müller", "anna.mueller@example.org")
    assert p.to_addresses == ["support@shop.example", "orders@shop.example"]
    assert p.reply_to == "anna.private@example.org"
    assert p.date == datetime(2024, 5, 3, 8, 15, tzinfo=timezone.utc) and p.date.tzinfo is not None
    assert p.content_type == "multipart/alternative"
    assert p.headers["return-path"] == "<anna.schmidt@example.org>"


def test_multipart_alternative_prefers_text_plain():
    p = fixture("multipart_alternative")
    assert p.text == "Hallo,\n\nich habe Größe M bestellt, brauche aber L. Kann ich das ändern?\n\nDanke!\nAnna"
    assert "<b>" not in p.text and p.attachments == []


def test_threading_headers():
    p = fixture("html_only")
    assert p.in_reply_to == "order-1042-shipped@shop.example"
    assert p.references == ["order-1042@shop.example", "order-1042-shipped@shop.example"]


def test_html_only_mail_becomes_text_without_the_gmail_quote():
    p = fixture("html_only")
    assert p.content_type == "text/html"
    assert "<div" not in p.text and '"label created"' in p.text and "Track it here" in p.text
    assert p.new_text == ('Hi there,\n\nThe tracking link says "label created" for three days now. '
                          "Is the parcel really on its way?\n\nBob")


def test_latin1_without_declared_charset():
    p = fixture("latin1_no_charset")
    assert "Können Sie bitte" in p.text and "Grüßen aus München" in p.text and "Jürgen Weiß" in p.text
    assert any("guessed" in d for d in p.defects)


def test_wrong_declared_charset_falls_back_to_detection():
    p = fixture("wrong_charset")
    assert "J'ai reçu un article abîmé : la crème est renversée." in p.text
    assert any("not valid utf-8" in d for d in p.defects)


def test_latin1_label_on_utf8_bytes_is_read_as_utf8():
    p = parse_email(b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\n" + "Grüße".encode())
    assert p.text == "Grüße" and any("is UTF-8" in d for d in p.defects)


def test_attachment_is_recorded_not_inlined():
    p = fixture("attachment")
    assert p.text == "The attached invoice lists 3 items but I only ordered 2."
    (att,) = p.attachments
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    assert (att.filename, att.content_type, att.size) == ("invoice-1042.pdf", "application/pdf", len(pdf))
    assert att.sha256 == hashlib.sha256(pdf).hexdigest()


@pytest.mark.parametrize("name, expected", [
    ("outlook_reply", "Thanks, but the label you sent is for the wrong address. Could you send a new one?\n\nDave"),
    ("gmail_reply", "Yes please, exchange it for a medium."),
    ("iphone_reply", "Friday works for me, I'll be home all day."),
    ("german_reply", "Vielen Dank, die Adresse ist jetzt korrekt."),
])
def test_new_text_drops_quotes_and_signatures(name, expected):
    p = fixture(name)
    assert p.new_text == expected
    assert len(p.text) > len(p.new_text)


def test_german_reply_headers():
    p = fixture("german_reply")
    assert p.subject == "AW: Bestätigung" and p.from_name == "Gräfin Zoe"


def test_broken_base64_does_not_raise():
    p = fixture("broken_base64")
    assert p.text.startswith("Hello, my order number is 42")
    assert any("Base64" in d for d in p.defects)


def test_bounce_keeps_human_readable_part_and_records_the_rest():
    p = fixture("bounce")
    assert p.content_type == "multipart/report" and "User unknown" in p.text
    assert [a.content_type for a in p.attachments] == ["message/delivery-status", "message/rfc822"]
    assert "Hello!" not in p.text  # the returned original is an attachment, not customer text


@pytest.mark.parametrize("body, expected", [
    ("Thanks!\n\n-- \nJane Doe\nACME Corp", "Thanks!"),
    ("Here is another email\n\nSent from my desk, is much easier than my mobile phone.",
     "Here is another email\n\nSent from my desk, is much easier than my mobile phone."),
    ("Merci !\n\nLe 3 mai 2024 à 10:00, Support <support@shop.example> a écrit :\n> Bonjour", "Merci !"),
    ("Gracias\n\nEl vie, 3 may 2024 a las 10:00, Support (<support@shop.example>) escribió:\n> Hola", "Gracias"),
    ("Grazie\n\nIl giorno ven 3 mag 2024 alle ore 10:00 Support <support@shop.example> ha scritto:\n> Ciao", "Grazie"),
    ("Bedankt\n\nOp vr 3 mei 2024 om 10:00 schreef Support <support@shop.example>:\n> Hallo", "Bedankt"),
    ("Obrigado\n\nEm sex., 3 de mai. de 2024 às 10:00, Support <support@shop.example> escreveu:\n> Olá", "Obrigado"),
    ("Tack\n\nDen fre 3 maj 2024 kl 10:00 skrev Support <support@shop.example>:\n> Hej", "Tack"),
    ("Tak\n\nDen 3. maj 2024 kl. 10.00 skrev Support <support@shop.example>:\n> Hej", "Tak"),
    ("Dzięki\n\nW dniu 3.05.2024 o 10:00, Support <support@shop.example> pisze:\n> Cześć\n\n"
     "Dnia 3.05.2024 Support napisał:\n> x", "Dzięki"),
    ("ありがとう\n\n2024年5月3日(金) 10:00 Support <support@shop.example>:\n> こんにちは", "ありがとう"),
    ("OK\n\n-----Original Message-----\nFrom: Support\nSent: Friday\nSubject: x\n\nold", "OK"),
    ("FYI below\n\n---------- Forwarded message ---------\nFrom: A <a@b.c>\nDate: Fri\nSubject: x\nTo: d@e.f\n\nold",
     "FYI below"),
    ("> only a quote", "> only a quote"),  # nothing new: fall back to the full text
])
def test_extract_new_text(body, expected):
    assert extract_new_text(body) == expected
    assert parse_email(plain(body)).new_text == expected


def test_customer_text_that_only_looks_like_a_header_is_kept():
    body = ("My order 12345 was sent:\nDate: 3 May 2024\nItems: 2 shirts\n\n"
            "Invitation for an interview:\nDate: Wednesday\nTime: 7:00am")
    assert extract_new_text(body) == body


def test_bullets_are_not_a_dash_signature():
    body = "Please send:\n\n- a blue shirt\n- a red shirt"
    assert extract_new_text(body) == body


@pytest.mark.parametrize("subject, expected", [
    ("Re: AW: RE[2]: Fwd:  Hello   World ", "hello world"),
    ("WG: SV: VS: TR: Fw: Rückfrage", "rückfrage"),
    ("RE(3): order", "order"),
    ("Order #12 – Return", "order #12 – return"),
    (None, ""),
])
def test_normalize_subject(subject, expected):
    assert normalize_subject(subject) == expected


def test_dates_and_addresses_that_do_not_parse():
    p = parse_email(b"From: not an address\r\nDate: someday\r\nSubject: x\r\n\r\nhi")
    assert p.from_address is None and p.date is None and p.text == "hi"
    naive = parse_email(b"Date: Fri, 3 May 2024 10:15:00 -0000\r\n\r\nhi").date
    assert naive == datetime(2024, 5, 3, 10, 15, tzinfo=timezone.utc)
    east = parse_email(b"Date: Fri, 3 May 2024 10:15:00 +0900\r\n\r\nhi").date
    assert east.utcoffset() == timedelta(hours=9)


def test_display_name_that_is_an_address():
    p = parse_email(b"From: alice@example.com <bob@example.com>\r\n\r\nhi")
    assert (p.from_name, p.from_address) == ("alice@example.com", "bob@example.com")


@pytest.mark.parametrize("raw", [
    b"", b"\x00" * 100, b"\xff\xfe" * 500, b"Subject: x", b"From:\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nunterminated",
    b"Content-Type: text/plain; charset=rot13\r\n\r\nhello",
    b"Content-Type: text/plain; charset=x-unknown\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=C3=A9=",
    b"Content-Type: text/html\r\n\r\n<html><<<>>><body><p>x" + b"<div>" * 20000,
    b"Subject: =?utf-8?b?" + b"QUFB" * 50000 + b"?=\r\nFrom: " + b"a," * 20000 + b"\r\n\r\nbody",
])
def test_hostile_input_never_raises(raw):
    p = parse_email(raw)
    assert isinstance(p.text, str) and isinstance(p.new_text, str) and isinstance(p.defects, list)


def test_deep_nesting_is_capped():
    raw = b"From: a@b.c\r\nSubject: deep\r\n"
    for i in range(3000):
        raw += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
    raw += b"Content-Type: text/plain\r\n\r\nhello\r\n"
    p = parse_email(raw)
    assert p.subject == "deep" and p.defects


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(raw):
    assert isinstance(parse_email(raw), ParsedEmail)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.binary(min_size=1, max_size=40))
def test_corrupted_fixture_never_raises(offset, junk):
    raw = (FIXTURES / "html_only.eml").read_bytes()
    assert isinstance(parse_email(raw[:offset] + junk + raw[offset:]), ParsedEmail)
