"""Turn one raw fetched email into a ``ParsedEmail`` — pure, no I/O, never raises.

Where it sits: runs on every message the IMAP poller fetches, first, before anything is stored as
customer text. ``autoreply.automated_reason`` reads its headers to drop machine mail; threading uses
``message_id`` / ``in_reply_to`` / ``references`` (``normalize_subject`` as the fallback); the responder
only sees ``new_text``: the customer's new words, without quoted history or signature.

Reply extraction lives in ``quotes.py``; this module decodes the MIME tree, charsets and HTML.
"""
from __future__ import annotations

import base64
import codecs
import email
import email.parser
import email.policy
import email.utils
import hashlib
import html as html_lib
import quopri
import re
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timezone

import charset_normalizer
from inscriptis.html_engine import Inscriptis
from inscriptis.model.config import ParserConfig
from lxml import html as lxml_html

from channels.email.quotes import extract_new_text, tidy as _tidy

MAX_BYTES = 30 * 1024 * 1024  # larger messages are truncated (noted in defects)
MAX_DEPTH, MAX_PARTS = 12, 300  # multipart nesting / part count we follow
MAX_HTML = 2 * 1024 * 1024
_POLICY = email.policy.default


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    subject: str = ""
    from_name: str = ""
    from_address: str | None = None
    to_addresses: list[str] = field(default_factory=list)
    reply_to: str | None = None
    date: datetime | None = None
    text: str = ""
    new_text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased name -> first value, decoded
    content_type: str = "text/plain"
    defects: list[str] = field(default_factory=list)


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse raw RFC 5322 bytes. Garbage in gives a best-effort ParsedEmail, never an exception."""
    defects: list[str] = []
    raw = bytes(raw) if isinstance(raw, (bytes, bytearray)) else str(raw).encode("utf-8", "replace")
    if len(raw) > MAX_BYTES:
        raw, _ = raw[:MAX_BYTES], defects.append(f"message truncated to {MAX_BYTES} bytes")
    for headers_only in (False, True):  # the stdlib parser recurses once per nesting level, for one
        try:
            return _parse(raw, defects, headers_only)
        except Exception as exc:  # keep the poller alive whatever the input
            defects.append(f"{'headers' if headers_only else 'MIME structure'} unparseable ({type(exc).__name__})")
    text = _tidy(_decode(raw, None, defects).replace("\x00", ""))
    return ParsedEmail(text=text, new_text=text, defects=defects)


def _parse(raw: bytes, defects: list[str], headers_only: bool) -> ParsedEmail:
    msg = email.parser.BytesParser(policy=_POLICY).parsebytes(raw, headersonly=headers_only)
    first = dict(reversed([(str(k).strip().lower(), _unsurrogate(str(v))) for k, v in msg.raw_items()][:500]))
    headers = {k: _header_text(v) for k, v in first.items() if k}
    (from_name, from_address), = _addresses(first.get("from", ""))[:1] or [("", None)]
    ids = lambda key: re.findall(r"<\s*([^<>\s]+)\s*>", first.get(key, "")) or first.get(key, "").split()
    texts: list[tuple[str, str]] = []
    attachments: dict[str, Attachment] = {}
    if headers_only:  # the body is kept as plain text
        texts.append(("plain", _decode((re.split(rb"\r?\n\r?\n", raw, 1) + [b""])[1], None, defects)))
    else:
        _walk(msg, 0, texts, attachments, defects, [0])
    full, reply = _render(texts, defects)
    return ParsedEmail(
        message_id=(ids("message-id") or [None])[0], in_reply_to=(ids("in-reply-to") or [None])[0],
        references=ids("references"), subject=headers.get("subject", ""), from_name=from_name,
        from_address=from_address, to_addresses=[a for _, a in _addresses(first.get("to", "")) if a],
        reply_to=next((a for _, a in _addresses(first.get("reply-to", "")) if a), None),
        date=_date(first.get("date")), text=full, new_text=reply, attachments=list(attachments.values()),
        headers=headers, content_type=_ctype(msg), defects=defects)


# --- headers -----------------------------------------------------------------------------------------
def _unsurrogate(value: str) -> str:
    """Unfold; raw 8-bit header bytes (surrogate escapes) are read as UTF-8, else Windows-1252."""
    value = re.sub(r"\r?\n(?=[ \t])", "", value)
    if not re.search(r"[\udc80-\udcff]", value):
        return value
    data = value.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _header_text(value: str) -> str:
    """RFC 2047 words decoded with the body's charset fallbacks (mislabelled gb2312, unknown charsets)."""
    def word(match: re.Match) -> str:
        charset, kind, data = match.group(1).split("*")[0], match.group(2).upper(), match.group(3)
        try:
            raw = (base64.b64decode(data + "=" * (-len(data) % 4)) if kind == "B"
                   else quopri.decodestring(data.encode("ascii", "replace"), header=True))
        except Exception:
            return match.group(0)
        return _decode(raw, charset, [])
    value = re.sub(r"(=\?[^?\s]+\?[bq]\?[^?\s]*\?=)\s+(?==\?)", r"\1", value[:16384], flags=re.I)  # RFC 2047 §6.2
    text = re.sub(r"=\?([^?\s]+)\?([bq])\?([^?\s]*)\?=", word, value, flags=re.I)
    return re.sub(r"\s*[\r\n]+\s*", " ", text).replace("\x00", "").strip()


def _addresses(value: str) -> list[tuple[str, str | None]]:
    value = value[:16384]
    try:
        found = [(a.display_name or "", a.addr_spec or "") for a in _POLICY.header_factory("to", value).addresses]
    except Exception:
        found = email.utils.getaddresses([value])
    angle = re.findall(r"<\s*([^<>@\s]+@[^<>@\s]+)\s*>", value)
    if len(found) == 1 and len(angle) == 1 and (found[0][1] != angle[0] or "\ufffd" in found[0][0]):
        found = [(_header_text(value.split("<")[0]).strip().strip('"').strip(), angle[0])]  # "a@x <b@y>": b
    clean = lambda a: a.lower() if re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", a) else None
    out = [(re.sub(r"\s+", " ", n).strip(), clean(a.strip().strip("<>"))) for n, a in found if n.strip() or a.strip()]
    return [("" if n.lower() == (a or "") else n, a) for n, a in out]  # an encoded address is no name


def _date(value: str | None) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
    except Exception:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed and parsed.tzinfo is None else parsed


# --- MIME tree and charsets -----------------------------------------------------------------------------
def _ctype(part) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "text/plain"


def _walk(part, depth: int, texts: list, attachments: dict, defects: list[str], count: list[int]) -> None:
    """Readable (kind, text) chunks in order; every other part is recorded as an attachment."""
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_PARTS:
        return _note(defects, "MIME tree too deep or too large; rest ignored")
    ctype = _ctype(part)
    if part.is_multipart() and (depth == 0 or not ctype.startswith("message/")):  # attached mail = attachment
        children = [c for c in part.get_payload() if isinstance(c, email.message.Message)]
        if ctype != "multipart/alternative" or not children:
            for child in children:
                _walk(child, depth + 1, texts, attachments, defects, count)
            return
        options = []
        for child in children:  # alternatives: text/plain if it has text, else the first one that has
            options.append([])
            _walk(child, depth + 1, options[-1], attachments, defects, count)  # inline images of all kept
        rank = lambda chunks: (any(k == "plain" and t.strip() for k, t in chunks), any(t.strip() for _, t in chunks))
        return texts.extend(max(options, key=rank))  # max() keeps the first of equals
    filename = disposition = charset = data = None
    try:
        filename, disposition, charset = part.get_filename(), part.get_content_disposition(), part.get_content_charset()
        data = part.get_payload(decode=True)
        if data is None and ctype.startswith("message/"):
            data = part.get_payload(0).as_bytes(policy=email.policy.compat32)
    except Exception as exc:
        _note(defects, f"part unreadable ({type(exc).__name__})")
    data = data if isinstance(data, bytes) else b""
    for defect in getattr(part, "defects", [])[:10]:  # after decoding: base64/QP trouble is found then
        _note(defects, f"MIME defect: {type(defect).__name__}")
    if depth == 0 and ctype.startswith("text/") and ctype != "text/html" or (
            ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename):
        texts.append(("html" if ctype == "text/html" else "plain", _decode(data, charset, defects)))
    else:
        name = _header_text(filename) if filename else None
        digest = hashlib.sha256(data).hexdigest()
        attachments.setdefault(f"{name}/{digest}", Attachment(name, ctype, len(data), digest))


def _note(defects: list[str], label: str) -> None:
    if label not in defects:
        defects.append(label)


_CHARSET_ALIASES = {"ks_c_5601-1987": "cp949", "euc-kr": "cp949", "shift_jis": "cp932", "x-sjis": "cp932",
                    "gb2312": "gb18030", "gbk": "gb18030", "iso-8859-8-i": "iso-8859-8", "windows-874": "cp874",
                    "x-mac-roman": "mac_roman", "iso-8859-1": "cp1252", "latin1": "cp1252", "utf8": "utf-8"}
_PREFERRED = ["utf_8", "cp1252", "iso8859_15", "iso8859_2", "cp1250", "cp1251", "koi8_r", "cp932", "euc_jp",
              "iso2022_jp", "gb18030", "big5", "cp949"]  # tie-break among equally plausible guesses


def _decode(data: bytes, declared: str | None, defects: list[str]) -> str:
    """Declared charset, then UTF-8, then charset-normalizer's guess, then UTF-8 with replacement."""
    name = (declared or "").strip().strip("\"'").lower()
    codec = _CHARSET_ALIASES.get(name, name)
    try:
        codec = codecs.lookup(codec).name if codec and codecs.lookup(codec)._is_text_encoding else None
    except LookupError:
        codec = None
    if name and not codec:
        defects.append(f"unknown charset {name!r}")
    # A latin-1/ASCII label on valid UTF-8 is a classic mislabel (random 8-bit text is never valid UTF-8).
    if codec in ("cp1252", "iso8859-15", "ascii") and re.search(rb"[\x80-\xff]", data):
        try:
            text = data.decode("utf-8").replace("\x00", "")
        except UnicodeDecodeError:
            pass
        else:
            defects.append(f"declared charset {name} but body is UTF-8")
            return text
    for attempt in dict.fromkeys([codec] * bool(codec) + ["latin-1"] * (codec == "cp1252") + ["utf-8"]):
        try:
            return data.decode(attempt).replace("\x00", "")
        except (UnicodeDecodeError, LookupError):
            if attempt == codec:
                defects.append(f"body is not valid {name}")
    try:
        results = list(charset_normalizer.from_bytes(data[:65536]))
    except Exception:
        results = []
    if not results:
        defects.append("undecodable bytes replaced")
        return data.decode("utf-8", "replace").replace("\x00", "")
    least = min(r.chaos for r in results)
    tied = [r.encoding for r in results if r.chaos <= least + 0.01]
    guess = next((p for p in _PREFERRED if p in tied), tied[0])
    text = data.decode(guess, "replace")
    guess = "cp1252" if text == data.decode("cp1252", "replace") else guess  # same text: name the usual one
    defects.append(f"charset guessed as {guess}" + ("" if codec else " (none declared)"))
    return text.replace("\x00", "")


# --- rendering ------------------------------------------------------------------------------------------
def _render(texts: list[tuple[str, str]], defects: list[str]) -> tuple[str, str]:
    """The full readable text, and the new text (HTML quote containers are '> '-marked first)."""
    full, marked = [], []
    for kind, body in texts:
        plain, quoted = _html_to_text(body, defects) if kind == "html" else (body, body)
        if plain.strip():
            full.append(plain), marked.append(quoted)
    full_text = _tidy("\n\n".join(full))
    return full_text, extract_new_text("\n\n".join(marked), fallback=full_text)


# Quote containers of the big clients: Gmail, Apple Mail/Thunderbird (<blockquote type=cite>), Yahoo.
_QUOTE_XPATH = ("//blockquote | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
                " | //*[starts-with(@id, 'yahoo_quoted')] | //*[contains(@class, 'yahoo_quoted')]")


def _html_to_text(html: str, defects: list[str]) -> tuple[str, str]:
    if len(html) > MAX_HTML:
        html, _ = html[:MAX_HTML], defects.append(f"HTML body truncated to {MAX_HTML} characters")
    try:
        tree = lxml_html.document_fromstring(re.sub(r"^\s*<\?xml[^>]*>", "", html) or "<p></p>")
        for element in tree.xpath(_QUOTE_XPATH):
            element.set("data-dhq", "1")
        for element in tree.xpath("//hr"):  # inscriptis drops <hr>; Outlook separates the quote with one
            element.tag, element.text = "div", "_" * 32
        engine = Inscriptis(tree, ParserConfig(annotation_rules={"#data-dhq": ["quote"]}))
        text, spans = engine.get_text(), [(a.start, a.end) for a in engine.get_annotations()]
    except Exception as exc:
        defects.append(f"HTML not parseable ({type(exc).__name__}); tags stripped")
        text, spans = html_lib.unescape(re.sub(r"<[^>]*>", " ", html)), []
    lines, marked, pos = text.split("\n"), [], 0
    indent = min((len(x) - len(x.lstrip(" ")) for x in lines if x.strip()), default=0)  # inscriptis pads
    for line in lines:
        inside = line.strip() and any(s < pos + len(line) and e > pos for s, e in spans)
        marked.append("> " * bool(inside) + line[indent:])
        pos += len(line) + 1
    return textwrap.dedent(text), "\n".join(marked)


_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|vb|tr|antw|doorst|rv|enc|odp|pd|res|rif|ynt|ilt)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+", re.IGNORECASE)


def normalize_subject(subject: str | None) -> str:
    """Subject without any Re:/Fwd:/AW:/WG:/SV:/VS:/TR:/RE[2]: prefixes, whitespace-collapsed, lower-case."""
    return re.sub(r"\s+", " ", _SUBJECT_PREFIX.sub("", subject or "")).strip().lower()
