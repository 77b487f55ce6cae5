"""The owner's approval replies by email: "approve", new text or "reject" in answer to a draft.

Runs in the pipeline right after ``normalize``, for every human email, before the customer steps:
``handle`` says whether the message is the owner answering a notification or the digest (then it
is acted on and stored with route ignore, never answered as a customer) and ``confirm`` queues the
owner's short confirmation. Like Mailman's moderation chain it is a table of small rules, each
answering with a reason or nothing:

1. no Deskhand reference (``[ref TOKEN]`` in the subject, ``deskhand.draft|digest.TOKEN.`` in
   In-Reply-To/References) -> not an owner reply: a customer message (the owner may test the bot);
2. from anyone but ``[digest] to`` -> refused and logged, a ``refused`` event on the draft, and no
   mail back (never mail a forger). The From header can be forged, the token can't be guessed,
   so both are required;
3. from the owner, but the reference matches no draft or digest -> ignored, the owner is told;
4. otherwise the reply's words are read (``read_reply`` / ``read_digest_reply``, pure functions)
   and applied through ``responder.owner.approvals``, whose errors become lines of the confirmation.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from sqlmodel import Session, select

from channels.email.compose import new_message_id, references_for, reply_subject
from channels.email.parse import parse_email
from responder.core.logs import redact
from responder.core.models import Customer, Digest, Draft, Message, OutboxKind
from responder.core.settings import Settings
from responder.core.templating import render
from responder.owner import approvals, owner_mail
from responder.send import outbox

log = logging.getLogger("deskhand.owner_replies")
ACTOR = "owner (email)"

# --- reading the reply (pure) -------------------------------------------------------------------
# The signature separator "-- " (RFC 3676 §4.3) and the mobile clients' one-line signatures.
SIGNATURE = re.compile(r"^(?:--\s*|__+|sent from my [\w ]{2,30}|sent from (?:outlook|mail|yahoo mail) for [\w ]+"
                       r"|get outlook for [\w ]+|von meinem [\w ]+ gesendet|envoyé de mon [\w ]+)$", re.I)
# Where the quoted notification starts. The parser falls back to the whole text when a reply has no
# new words, so a reply that is only the quote must not become "the new text" sent to a customer.
QUOTE_START = re.compile(r"^(?:(?:on|am|le|el|op|il)\b.{0,300}\b(?:wrote|schrieb|a écrit|escribió|schreef|"
                         r"ha scritto)\b.{0,200}:|-{2,}\s*original message\s*-{2,}|from:\s.+\s(?:sent|date):\s.+)$",
                         re.I | re.S)
APPROVE = {"approve", "approved", "ok", "okay", "send", "yes", "👍", "lgtm"}
FILLER = {"it", "please", "as", "is", "now", "thanks", "thank", "you", "go", "ahead"}
REJECT_WORDS = {"reject", "rejected", "no", "nope", "drop", "discard", "don't", "dont", "not"}
STRONG_REJECT = re.compile(r"^(?:reject(?:ed)?|discard(?:ed)?|don'?t send(?: it)?|do not send(?: it)?)[.!]*"
                           r"(?:$|\s*[:,\-–—]\s*(.*)$|(?P<loose>\s+)(.*)$)", re.I | re.S)
# "no" and "drop" start ordinary sentences ("No, we don't ship there", "Drop by the shop"):
# only bare, or with the reason after a colon or dash.
WEAK_REJECT = re.compile(r"^(?:no|nope|drop(?: it)?)[.!]*(?:$|\s*[:\-–—]\s*(.*)$)", re.I | re.S)
DIGEST_LINE = re.compile(
    r"^(?P<verb>send anyway|approve anyway|approved?|ok(?:ay)?|send|yes|reject(?:ed)?|discard|drop|no)\s*"
    r"(?P<nums>all|#?\d+(?:(?:\s*,\s*|\s+and\s+|\s*&\s*|\s+)#?\d+)*)(?![\w])\s*[:\-–—]?\s*(?P<rest>.*)$", re.I)
ABOUT_DRAFT = re.compile(r"\b(?:draft|send (?:it|this|that))\b|^(?:ok(?:ay)?|yes|approved?|send)\W+(?:but|except|after"
                         r"|once|if|when)\b", re.I)
SHORT = 4  # words: a reply this short that uses a command word is an instruction, never the new text


@dataclass(frozen=True)
class Command:
    verb: str                       # approve | force | reject | edit | empty | unclear
    text: str = ""                  # the new reply (edit, force) or the reason (reject)
    numbers: tuple[int, ...] = ()   # digest lines: the drafts' numbers in the digest (1-based)
    all: bool = False               # digest lines: "approve all"


def strip_signature(text: str) -> str:
    """The owner's new words: no signature, no phone's "Sent from" line, no quoted notification."""
    lines = [line for line in (text or "").replace("\r\n", "\n").replace("’", "'").split("\n")
             if not line.lstrip().startswith(">")]
    for i, line in enumerate(lines):
        # An attribution line may be wrapped ("On Mon, ... Deskhand <" / "shop@example.test> wrote:").
        if SIGNATURE.match(line.strip()) or any(QUOTE_START.match(" ".join(lines[i:i + n]).strip()) for n in (1, 2)):
            lines = lines[:i]
            break
    return "\n".join(lines).strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+|👍", text.lower())


def read_reply(text: str) -> Command:
    """What a reply about one draft asks for. Anything that isn't an instruction is the new text."""
    text = strip_signature(text)
    if not text:
        return Command("empty")
    words = set(_words(text))
    if {"go", "ahead"} <= words:
        words.add("ok")
    lines = text.split("\n")
    if len(lines) > 1 and re.fullmatch(r"(?:send|approve|ok) anyway[.!:]*", lines[0].strip(), re.I):
        return Command("force", text="\n".join(lines[1:]).strip())  # the edited text, sent anyway
    if words and "anyway" in words and words & APPROVE and words <= APPROVE | FILLER | {"anyway"}:
        return Command("force")
    if words and words & APPROVE and words <= APPROVE | FILLER:
        return Command("approve")
    match = STRONG_REJECT.match(text)
    # "reject wrong price" is a reason; "Rejected parcels come back to us, so ..." is the new text.
    if match and not (match["loose"] and (len(lines) > 1 or len(_words(text)) > 8)):
        return Command("reject", text=(match.group(1) or match.group(3) or "").strip())
    match = WEAK_REJECT.match(text)
    if match:
        return Command("reject", text=(match.group(1) or "").strip())
    if len(lines) == 1 and (len(_words(text)) <= SHORT and words & (APPROVE | FILLER | REJECT_WORDS | {"anyway"})
                            or len(_words(text)) <= 10 and ABOUT_DRAFT.search(text)):
        return Command("unclear", text=text)  # "ok but fix the price", "send it now": ask, never send it
    return Command("edit", text=text)


def read_digest_reply(text: str) -> tuple[list[Command], list[str]]:
    """Numbered lines of a digest reply ("approve 2", "send 1 3", "reject 2 wrong price",
    "approve all"), and the lines that were not understood."""
    commands, unread = [], []
    for line in strip_signature(text).split("\n"):
        line = line.strip()
        match = DIGEST_LINE.match(line)
        if not line:
            continue
        if not match:
            unread.append(line)
            continue
        verb, rest = match["verb"].lower(), match["rest"].strip()
        numbers = tuple(int(n) for n in re.findall(r"\d+", match["nums"]))
        every = match["nums"].lower() == "all"
        if verb.split()[0] in ("reject", "rejected", "discard", "drop", "no"):
            commands.append(Command("reject", text=rest, numbers=numbers, all=every))
        elif verb.endswith("anyway") or rest.lower().strip(".!") == "anyway":
            commands.append(Command("force", numbers=numbers, all=every))
        elif set(_words(rest)) <= FILLER:
            commands.append(Command("approve", numbers=numbers, all=every))
        else:
            unread.append(line)  # "approve 2 but change the price": not an instruction we can follow
    return commands, unread


def find_refs(subject: str, in_reply_to: str | None, references: list[str]) -> list[str]:
    """Deskhand tokens the message carries (``owner_mail.find_refs``, the one definition of the
    formats our mails use): the subject's first, then the newest References."""
    texts = [subject, in_reply_to, *reversed(references or [])]
    return list(dict.fromkeys(token for text in texts for token in owner_mail.find_refs(text or "")))


# --- acting on it -------------------------------------------------------------------------------
@dataclass
class Done:
    """One draft's line in the confirmation."""
    result: str          # sent | edited | forced | rejected | moved_on | failed
    draft_id: int | None = None
    customer: str = ""
    detail: str = ""
    number: int | None = None  # the draft's number in a digest, for "send anyway 2"


@dataclass
class Outcome:
    reasons: list[str] = field(default_factory=list)   # stored on the owner message's ignore draft
    refused: bool = False                              # not from the owner: nothing is mailed back
    done: list[Done] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)     # lines about no single draft


def handle(work, session: Session, settings: Settings) -> Outcome | None:
    """An ``Outcome`` when this email is an approval reply (acted on here), else None."""
    refs = find_refs(work.subject, work.in_reply_to, work.references)
    if not refs:
        return None
    draft, digest = find_target(session, refs)
    sender = from_address(work)
    owner = (settings.owner_address or "").strip().lower()
    if not owner or sender != owner or (work.sender or "").lower() != owner:
        log.warning("approval reply refused: from %s, not the owner's address", redact(sender or "?"))
        if draft is not None:
            approvals.record(session, draft, "refused", sender or "?",
                             "an approval reply from an address that is not the owner's; nothing done")
        return Outcome([f"approval reply refused: from {redact(sender or '?')}, not the owner's address"],
                       refused=True)
    outcome = Outcome()
    if draft is not None:
        apply(session, settings, draft, read_reply(work.text), outcome)
    elif digest is not None:
        apply_digest(session, settings, digest, work.text, outcome)
    else:
        outcome.reasons.append("approval reply ignored: the reference matches no draft")
        outcome.notes.append("Nothing was done: the reference in your reply matches no draft. "
                             "Please answer the notification or the digest itself.")
    return outcome


def find_target(session: Session, refs: list[str]) -> tuple[Draft | None, Digest | None]:
    for token in refs:
        draft = approvals.by_token(session, token)
        if draft is not None:
            return draft, None
        digest = session.exec(select(Digest).where(Digest.token == token)).first()
        if digest is not None:
            return None, digest
    return None, None


def from_address(work) -> str:
    """The From header's address. ``work.sender`` may be a relay's Reply-To, which anyone can set."""
    return (parse_email(work.message.raw or b"").from_address or "").strip().lower()


def apply(session: Session, settings: Settings, draft: Draft, command: Command, outcome: Outcome,
          number: int | None = None) -> None:
    """One instruction for one draft, through the approval rules; errors become confirmation lines."""
    customer = customer_name(session, draft)
    text = command.text if command.verb in ("edit", "force") and command.text else None
    if command.verb in ("empty", "unclear"):
        said = f'"{command.text}" could be an instruction or the reply itself' if command.text \
            else "there were no new words in your reply"
        outcome.reasons.append(f"owner's reply not understood for draft {draft.id}: nothing done")
        outcome.notes.append(f"Nothing was done with draft {draft.id} for {customer}: {said}. Reply \"approve\" "
                             "to send the draft as it is, \"reject\" to drop it, or write the whole reply to "
                             "send instead.")
        return
    try:
        if command.verb == "reject":
            approvals.reject(session, draft.id, actor=ACTOR, reason=command.text)
            outcome.reasons.append(f"owner rejected draft {draft.id} by email"
                                   + (f": {command.text}" if command.text else ""))
            outcome.done.append(Done("rejected", draft.id, customer, command.text))
            return
        approvals.approve(session, settings, draft.id, actor=ACTOR, text=text, force=command.verb == "force")
    except approvals.ThreadMovedOn as exc:
        outcome.reasons.append(f"owner's reply could not be applied: {exc}")
        outcome.done.append(Done("moved_on", draft.id, customer, "edited" if text else "", number))
        return
    except approvals.ApprovalError as exc:
        outcome.reasons.append(f"owner's reply could not be applied: {exc}")
        outcome.done.append(Done("failed", draft.id, customer, str(exc)))
        return
    result = "edited" if draft.edited else "forced" if command.verb == "force" else "sent"
    outcome.reasons.append(f"owner approved draft {draft.id} by email"
                           + {"edited": " with an edited reply", "forced": " (sent anyway)"}.get(result, ""))
    outcome.done.append(Done(result, draft.id, customer))


def apply_digest(session: Session, settings: Settings, digest: Digest, text: str, outcome: Outcome) -> None:
    ids = list(digest.draft_ids or [])
    commands, unread = read_digest_reply(text)
    if not commands and len(ids) == 1:  # a one-draft digest: answered like the draft's notification
        draft = session.get(Draft, ids[0])
        if draft is not None:
            apply(session, settings, draft, read_reply(text), outcome)
            return
    for command in commands:
        numbers = range(1, len(ids) + 1) if command.all else command.numbers
        for number in numbers:
            draft = session.get(Draft, ids[number - 1]) if 1 <= number <= len(ids) else None
            if draft is None:
                outcome.reasons.append(f"owner's reply could not be applied: no draft {number} in the digest")
                outcome.notes.append(f"The digest of {digest.day} has no draft {number}.")
                continue
            apply(session, settings, draft, command, outcome, number)
    if unread:
        outcome.notes.append("Not understood (nothing done for these lines): "
                             + "; ".join(f'"{line[:80]}"' for line in unread[:3]))
    if not commands:
        outcome.reasons.append("owner's reply not understood: nothing done")
        outcome.notes.append(f"The digest of {digest.day} lists {len(ids)} drafts, so say which by its "
                             "number, one per line: \"approve 2\", \"send 1 3\", \"reject 2 wrong price\", "
                             "\"approve all\". To send your own text instead, reply to that draft's "
                             "notification (or its link in the digest).")


def customer_name(session: Session, draft: Draft) -> str:
    msg = session.get(Message, draft.message_id)
    customer = session.get(Customer, msg.customer_id) if msg and msg.customer_id else None
    return (customer.name if customer and customer.name else msg.sender if msg else "") or "the customer"


def confirm(session: Session, settings: Settings, work, draft: Draft, outcome: Outcome) -> None:
    """Queue the owner's confirmation, one per owner message (the outbox's unique draft and kind)."""
    if outcome.refused or not settings.owner_address:
        return
    body = render("owner/confirm.txt.j2", done=outcome.done, notes=outcome.notes,
                  owner_name=settings.store.owner_name).strip() + "\n"
    outbox.enqueue(session=session, draft_id=draft.id, kind=OutboxKind.CONFIRM, thread_id=None, channel="email",
                   recipient=settings.owner_address, subject=reply_subject(work.subject), body_text=body,
                   message_id=new_message_id(settings.reply_address), in_reply_to=work.message_id,
                   references=references_for(work.message_id, list(work.references)), automatic=False,
                   extra={"auto_generated": True})
