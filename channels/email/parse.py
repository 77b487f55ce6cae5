"""Turn one raw fetched email into a ``ParsedEmail`` — pure, no I/O, never raises.

Where it sits: runs on every message the IMAP poller fetches, first, before anything is stored as
customer text. ``autoreply.automated_reason`` reads its headers to drop machine mail; threading uses
``message_id`` / ``in_reply_to`` / ``references`` (``normalize_subject`` as the fallback); the responder
only sees ``new_text``: the customer's new words, without quoted history or signature.

Reply extraction and HTML rendering live in ``quotes.py``; this module decodes the MIME tree and
charsets. Hostile input costs at most about a second (tests/test_fuzz_mime.py): header values are
capped before the stdlib's quadratic header parser sees them, at most ``MAX_BOUNDARIES`` "--" lines
are read, and a tree nested deeper than the stdlib parser can recurse is read flat.
"""
from __future__ import annotations

import base64
import email
import email.parser
import email.policy
import email.utils
import functools
import hashlib
import quopri
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from channels.email.charsets import decode_text
from channels.email.quotes import extract_new_text, render_text  # noqa: F401 (re-exported)
from channels.email.quotes import tidy as _tidy

MAX_BYTES = 30 * 1024 * 1024  # larger messages are truncated (noted in defects)
MAX_DEPTH, MAX_PARTS = 12, 300  # multipart nesting / part count we follow
MAX_TEXT = 2 * 1024 * 1024  # bytes of readable text decoded a message, all parts together (memory)
MAX_BOUNDARIES = 2_000  # "--" lines read: a part costs the parser ~0.4 ms, and 25 MB holds millions
# The stdlib header parser is quadratic on '"' runs and long parameter lists (30 s for one 250 KB
# Content-Type). Real headers are far shorter; a long To list loses its tail.
MAX_HEADER_NAMES, MAX_ADDRESS_HEADER, MAX_PART_HEADER = 500, 4096, 2048
_POLICY = email.policy.default
_parsed_header = functools.lru_cache(maxsize=1024)(_POLICY.header_factory)


class _CappedPolicy(email.policy.EmailPolicy):
    """The default policy, each header value capped and parsed once (the feedparser reads every
    part's Content-Type about five times)."""

    def header_fetch_parse(self, name, value):
        if hasattr(value, "name"):
            return value
        return _parsed_header(name, "".join(re.split(r"\r\n|\r|\n", value[:MAX_PART_HEADER])))


# Up to MANY_PARTS "--" lines the default policy reads the tree (RFC 2047/2231 names, its reading of
# odd boundaries); beyond, compat32, ~10x faster a part, keeps a parts bomb within a second.
_CAPPED, MANY_PARTS = _CappedPolicy(), 200


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
    raw = _cut_boundaries(raw, defects)
    for headers_only in (False, True):  # the stdlib parser recurses once per nesting level, for one
        try:
            return _parse(raw, defects, headers_only)
        except Exception as exc:  # keep the poller alive whatever the input
            defects.append(f"{'headers' if headers_only else 'MIME structure'} unparseable ({type(exc).__name__})")
    text = _tidy(decode_text(raw[:MAX_TEXT], None, defects).replace("\x00", ""))
    return ParsedEmail(text=text, new_text=text, defects=defects)


def _parse(raw: bytes, defects: list[str], headers_only: bool) -> ParsedEmail:
    policy = _CAPPED if raw.count(b"\n--") <= MANY_PARTS else email.policy.compat32
    msg = email.parser.BytesParser(policy=policy).parsebytes(raw, headersonly=headers_only)
    first: dict[str, str] = {}  # the first value of each name, wherever it is (From after 10,000 Received)
    for name, value in msg.raw_items():
        key = str(name).strip().lower()
        if key and key not in first and len(first) < MAX_HEADER_NAMES:
            first[key] = _unsurrogate(str(value))
    headers = {k: _header_text(v) for k, v in first.items()}
    from_name, from_address = _mailbox(first.get("from", ""))
    ids = lambda key: re.findall(r"<\s*([^<>\s]+)\s*>", first.get(key, "")) or first.get(key, "").split()
    texts: list[tuple[str, str]] = []
    attachments: dict[str, Attachment] = {}
    if not headers_only:
        _walk(msg, 0, texts, attachments, defects, [0, MAX_TEXT])
    if headers_only or any(d.startswith("MIME tree too deep") for d in defects) and not any(
            t.strip() for _, t in texts):  # no readable part within MAX_DEPTH: read the body flat
        multipart = _ctype(msg).startswith("multipart/")
        body = _flat_body(raw) if multipart else (re.split(rb"\r?\n\r?\n", raw, 1) + [b""])[1]
        texts = [("plain", decode_text(body[:MAX_TEXT], None, defects))]
    full, reply = render_text(texts, defects)
    return ParsedEmail(
        message_id=(ids("message-id") or [None])[0], in_reply_to=(ids("in-reply-to") or [None])[0],
        references=ids("references"), subject=headers.get("subject", ""), from_name=from_name,
        from_address=from_address, to_addresses=[a for _, a in _addresses(first.get("to", "")) if a],
        reply_to=_mailbox(first.get("reply-to", ""))[1],
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
        return decode_text(raw, charset, [])
    value = re.sub(r"(=\?[^?\s]+\?[bq]\?[^?\s]*\?=)\s+(?==\?)", r"\1", value[:16384], flags=re.I)  # RFC 2047 §6.2
    text = re.sub(r"=\?([^?\s]+)\?([bq])\?([^?\s]*)\?=", word, value, flags=re.I)
    return re.sub(r"\s*[\r\n]+\s*", " ", text).replace("\x00", "").strip()


# A mailbox we may write to: RFC 5322 atext (and UTF-8, RFC 6532) in the local part, host name labels
# in the domain. No specials, no controls, no spaces: nothing that could end or split an SMTP command.
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_ADDRESS = re.compile(rf"[^\s\x00-\x1f\x7f<>()\[\]\\,;:\"@]+@{_LABEL}(?:\.{_LABEL})*")


def _addresses(value: str, *, one: bool = False) -> list[tuple[str, str | None]]:
    value = value[:MAX_ADDRESS_HEADER]
    try:
        found = [(a.display_name or "", a.addr_spec or "") for a in _POLICY.header_factory("to", value).addresses]
    except Exception:
        found = email.utils.getaddresses([value])
    angle = re.findall(r"<\s*([^<>@\s]+@[^<>@\s]+)\s*>", value)
    # One mailbox in <>, but the parser read it differently ("a@x <b@y>", or a display name with ':'
    # or '@' in a malformed encoded word, which it splits into a group): the <> address is the one.
    if len(angle) == 1 and (one and len(found) != 1 or len(found) == 1 and (
            found[0][1] != angle[0] or "\ufffd" in found[0][0])):
        found = [(_header_text(value.split("<")[0]).strip().strip('"').strip(), angle[0])]
    out = [(re.sub(r"\s+", " ", n).strip(), _clean_address(a.strip().strip("<>")))
           for n, a in found if n.strip() or a.strip()]
    return [("" if n.lower() == (a or "") else n, a) for n, a in out]  # an encoded address is no name


def _clean_address(address: str) -> str | None:
    if not _ADDRESS.fullmatch(address):
        return None
    local, _, domain = address.rpartition("@")
    try:  # an international domain in its ASCII form (RFC 5890), as SMTP and the To header need it
        return f"{local}@{domain.encode('idna').decode('ascii')}".lower()
    except UnicodeError:
        return None


def _mailbox(value: str) -> tuple[str, str | None]:
    """The first mailbox of a From or Reply-To (a second one in From is never answered)."""
    return (_addresses(value, one=True)[:1] or [("", None)])[0]


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


def _cut_boundaries(raw: bytes, defects: list[str]) -> bytes:
    """The message up to its MAX_BOUNDARIES-th "--" line (linear: found, never parsed)."""
    pos = 0
    for _ in range(MAX_BOUNDARIES + 1):
        pos = raw.find(b"\n--", pos) + 1
        if not pos:
            return raw
    defects.append(f"more than {MAX_BOUNDARIES} MIME boundaries; the rest ignored")
    return raw[:pos]


_BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^"\s;]+)', re.I)
_NOT_TEXT = re.compile(rb"content-(?:type\s*:(?!\s*text/)|transfer-encoding\s*:\s*(?:base64|x-))", re.I)


def _flat_body(raw: bytes) -> bytes:
    """A multipart message nested deeper than we follow, read line by line without recursion:
    boundary lines and part headers dropped, and parts that are not plain readable text skipped."""
    boundaries = set(_BOUNDARY.findall(raw))
    lines, in_head, skip = [], True, False
    for line in raw.splitlines():
        bare = line.strip()
        if bare.startswith(b"--") and (bare[2:] in boundaries or bare[2:-2] in boundaries):
            in_head, skip = True, False
        elif in_head:
            in_head, skip = bool(bare), skip or bool(_NOT_TEXT.match(bare))
        elif not skip:
            lines.append(line)
    return b"\n".join(lines)


def _walk(part, depth: int, texts: list, attachments: dict, defects: list[str], count: list[int]) -> None:
    """Readable (kind, text) chunks in order; every other part is recorded as an attachment.
    ``count``: [parts seen, bytes of text still to decode] (decoded text takes up to 4 bytes a byte)."""
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
        if len(data) > count[1]:
            data, _ = data[:count[1]], _note(defects, f"text over {MAX_TEXT} bytes ignored")
        count[1] -= len(data)
        texts.append(("html" if ctype == "text/html" else "plain", decode_text(data, charset, defects)))
    else:
        name = _header_text(filename) if filename else None
        digest = hashlib.sha256(data).hexdigest()
        attachments.setdefault(f"{name}/{digest}", Attachment(name, ctype, len(data), digest))


# Defects after which part of the message went unread: an answer to the rest may miss the point,
# so routing holds such a message for the owner (``responder.decide.routing.read_in_part``).
PARTIAL_READ = ("message truncated", "MIME structure unparseable", "headers unparseable", "more than",
                "MIME tree too deep", "part unreadable", "text over")


def _note(defects: list[str], label: str) -> None:
    if label not in defects:
        defects.append(label)


_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|vb|tr|antw|doorst|rv|enc|odp|pd|res|rif|ynt|ilt)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+", re.IGNORECASE)


def normalize_subject(subject: str | None) -> str:
    """Subject without any Re:/Fwd:/AW:/WG:/SV:/VS:/TR:/RE[2]: prefixes, whitespace-collapsed, lower-case."""
    return re.sub(r"\s+", " ", _SUBJECT_PREFIX.sub("", subject or "")).strip().lower()
