"""Builds the reply email: threading headers, RFC 3834 marks, plain text plus HTML.

Runs in the send job just before SMTP. Replies thread in the customer's client (RFC 5322
§3.6.4): ``Re:`` subject, ``In-Reply-To`` the customer's Message-ID, ``References`` their chain
plus that id, and our own Message-ID fixed when the outbox row was written. Automatic replies
carry ``Auto-Submitted: auto-replied`` (RFC 3834 §5) so other robots don't answer them.
Header injection is impossible: control characters (CR and LF among them) are stripped from every
header value and so is "=?" (Python's email would decode an RFC 2047 word there into a line break,
CVE-2024-6923), the recipient must be exactly one plain address (never a list, a name or a header
fragment: ``ValueError`` otherwise, which the SMTP adapter turns into a permanent failure), and a
customer's message id that isn't one ``<id>`` token is left out of the threading headers.
"""
from __future__ import annotations

import base64
import re
import uuid
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr

from channels.base import Outbound
from responder.core.clock import utcnow
from responder.core.templating import render

REPLY_PREFIX = re.compile(r"^\s*re\s*:", re.I)
MAX_REFERENCES = 20  # keep the header sane on very long threads (first + most recent)


class MessageIdList(UnstructuredHeader):
    """In-Reply-To and References are msg-id lists (RFC 5322 §3.6.4): folded between ids, never
    RFC 2047-encoded. Python's default folding encodes an id longer than a line (Outlook's run to
    ~83 characters) as ``=?utf-8?q?=3C…?=``, which no client matches: the reply loses its thread."""

    max_count = 1

    def fold(self, *, policy) -> str:
        head, lines = f"{self.name}:", []
        line = head
        for token in str(self).split():
            if line != head and len(line) + 1 + len(token) > policy.max_line_length:
                lines.append(line)
                line = ""
            line += " " + token
        return policy.linesep.join([*lines, line]) + policy.linesep


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("in-reply-to", MessageIdList)
_HEADERS.map_to_type("references", MessageIdList)
POLICY = default_policy.clone(header_factory=_HEADERS)


def new_message_id(from_address: str) -> str:
    domain = from_address.rpartition("@")[2] or "deskhand.invalid"
    return f"<deskhand.{uuid.uuid4().hex}@{clean_header(domain)}>"


def clean_header(value: str) -> str:
    """One line, no control characters: CR/LF can never start a new header. Unicode line breaks go
    too (U+2028, NEL): Python's email refuses a header str.splitlines() would split, which made the
    reply to a customer whose subject carried one fail for good. And no "=?": Python's email decodes
    RFC 2047 words in the values it is given and, before 3.11.10 (CVE-2024-6923), writes a CR LF
    they decode to as a real line break, so "=?utf-8?q?=0D=0ABcc:...?=" would add a header."""
    return re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]+", " ", value or "").replace("=?", "= ?").strip()


# RFC 5322 atext local part (Python's email refuses a non-ASCII one), an ASCII host name (IDNA).
_ONE_ADDRESS = re.compile(r"[^\s\x00-\x1f\x7f<>()\[\]\\,;:\"@]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_MESSAGE_ID = re.compile(r"[!-~]+")  # printable ASCII, no space: one msg-id token (RFC 5322 §3.6.4)


def one_address(value: str) -> str:
    """``value`` if it is one plain address; ``ValueError`` for anything else."""
    if not _ONE_ADDRESS.fullmatch(value or ""):
        raise ValueError(f"the recipient {value[:80]!r} is not one email address")
    return value


def message_ids(*values: str | None) -> list[str]:
    """The ids that are one clean token each (brackets stripped); the rest are left out."""
    ids = ((v or "").strip().strip("<>") for v in values)
    return [i for i in ids if _MESSAGE_ID.fullmatch(i) and not re.search(r"[<>]|=\?", i)]  # see clean_header


def reply_subject(subject: str) -> str:
    subject = clean_header(subject)
    if not subject:
        return "Re: your message"
    return subject if REPLY_PREFIX.match(subject) else f"Re: {subject}"


def references_for(in_reply_to: str | None, references: list[str]) -> list[str]:
    chain = [r for r in references if r]
    if in_reply_to and in_reply_to not in chain:
        chain.append(in_reply_to)
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1):]
    return chain


# One word of a person's name: a letter, then letters, apostrophes or hyphens, maybe a closing dot
# ("O'Brien", "Mary-Jane", "Zoë", "张伟", "J."). A URL, a domain, a number, an address or "$5" is not one.
_NAME_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['’\-])*\.?")
# Words a forged display name uses to make the shop's greeting say something ("Hi Refund,"); no
# first name is one of them.
_NOT_NAMES = frozenset("""refund refunds approved approval free discount winner won prize urgent account payment
    order invoice security support admin administrator team service customer verify verified password click here
    credit card bank gift voucher coupon offer sale claim confirm confirmed cancel cancelled shipping delivery
    notice alert warning update re fwd""".split())
_GREETING = re.compile(r"^\s*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening))\b", re.I)


def greeting_name(display_name: str) -> str:
    """The first name to greet, or "" when the display name does not look like a person's name.

    Anyone can put anything in From's display name, and the greeting is the one part of a reply
    no drafter or guard wrote: "http://evil.example/refund-form" must never become "Hi http://…,".
    "Whitfield, Helen" (Outlook's last-name-first) greets Helen."""
    name = " ".join(clean_header(display_name).split())
    if name.count(",") == 1:
        last, first = (part.strip() for part in name.split(","))
        name = first or last
    words = name.split(" ") if name else []
    if not words or len(words) > 4 or len(name) > 60 or not all(_NAME_WORD.fullmatch(w) for w in words):
        return ""
    if any(w.lower().strip(".") in _NOT_NAMES for w in words):  # "Refund Approved", "Support Team"
        return ""
    given = [w for w in words if not w.endswith(".")]  # "Dr. Jane Smith": not "Hi Dr.,"
    return given[0] if given else ""


def render_body(*, body: str, customer_name: str, store, signed_by_owner: bool = True) -> str:
    """The whole plain-text reply: greeting, the draft, the sign-off. A body that opens with its
    own greeting (the owner wrote "Hi Priya," when approving) gets no second one. A note that
    says it passed the message to the owner is signed by the shop, not by the owner."""
    body = body.strip()
    greet = not _GREETING.match(body)
    return render("email/reply.txt.j2", body=body, greet=greet, customer_name=greeting_name(customer_name),
                  signoff="Best,", owner_name=store.owner_name if signed_by_owner else "",
                  store_name=store.name).strip() + "\n"


def compose(outbound: Outbound, *, from_address: str, from_name: str) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = formataddr((clean_header(from_name), clean_header(from_address)))
    msg["To"] = Address(addr_spec=one_address(outbound.recipient))
    msg["Subject"] = clean_header(outbound.subject)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = clean_header(outbound.message_id)
    if message_ids(outbound.in_reply_to):
        msg["In-Reply-To"] = "<%s>" % message_ids(outbound.in_reply_to)[0]
    if message_ids(*outbound.references):
        msg["References"] = " ".join(f"<{r}>" for r in message_ids(*outbound.references))
    if outbound.automatic:
        msg["Auto-Submitted"] = "auto-replied"      # RFC 3834 §5
        msg["X-Auto-Response-Suppress"] = "All"    # asks Exchange not to send OOF back
    elif outbound.extra.get("auto_generated"):
        msg["Auto-Submitted"] = "auto-generated"    # RFC 3834 §5: the digest, notifications
        msg["X-Auto-Response-Suppress"] = "All"
    feedback = outbound.extra.get("feedback") or {}
    text = outbound.body_text
    if feedback:
        text = text.rstrip("\n") + "\n\n" + render("email/feedback.txt.j2", **feedback).strip() + "\n"
    msg.set_content(text)
    html = outbound.body_html
    if html is None:
        paragraphs = [p.splitlines() for p in re.split(r"\n\s*\n", outbound.body_text.strip()) if p.strip()]
        html = render("email/reply.html.j2", paragraphs=paragraphs, feedback=feedback)
    msg.add_alternative(html, subtype="html")
    images = outbound.extra.get("images") or []
    if images:
        # Inline pictures (the digest's chart): multipart/related around the HTML part, cid: links.
        html_part = msg.get_payload()[1]
        for image in images:
            maintype, _, subtype = image.get("content_type", "image/png").partition("/")
            html_part.add_related(base64.b64decode(image["data"]), maintype=maintype, subtype=subtype,
                                  cid=f"<{clean_header(image['cid'])}>", disposition="inline",
                                  filename=clean_header(image.get("filename", "chart.png")))
    return msg
