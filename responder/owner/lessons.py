"""Learning from edits: when the owner rewrites a draft, propose what the knowledge was missing.

Runs when an edited draft is approved (``approvals.approve``); the digest and the queue page show
each proposal as a diff the owner accepts in one click (``accept`` writes it into the knowledge
folder; the caller re-indexes). The rule, in order:
- the owner's reply states a figure (price, time, size...) the bot's draft did not, or the bot had
  no draft at all: the bot lacked a fact -> a new FAQ entry (``faq.md``) with the customer's
  question as its heading and the owner's words as its answer;
- otherwise the facts were right and the wording was not -> a tone example (``examples.jsonl``).
"""
from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

from sqlmodel import Session, col, select

from responder.core.clock import utcnow
from responder.core.models import Draft, Lesson, Message
from responder.core.settings import Settings
from responder.core.text import split_sentences
from responder.decide.figures import extract
from responder.draft.tone import body_of

FAQ_FILE, EXAMPLES_FILE = "faq.md", "examples.jsonl"


class LessonError(Exception):
    pass


def question_of(message: Message) -> str:
    """The customer's question in one line: the first sentence with a question mark, else the start."""
    text = " ".join((message.new_text or message.text or "").split())
    asked = re.search(r"[^.!?]*\?", text)
    line = (asked.group(0) if asked else text or message.subject or "Question").strip()
    return line[:1].upper() + line[1:120]


def new_figures(original: str, edited: str) -> list[str]:
    known = {c.text.lower() for c in extract(original)}
    return [c.text for c in extract(edited) if c.text.lower() not in known]


# Sentences that speak to this one customer about this one exchange: an FAQ answer must not carry
# "Sorry my first answer missed that!" to everyone who asks next.
PERSONAL = re.compile(r"^(?:(?:i'?m |i am |we'?re |we are |so )?sorry\b|(?:my )?apolog|thanks? (?:you )?for (?:your |the )?"
                      r"(?:patience|understanding|asking|reaching|getting back|letting)|good catch\b)"
                      r"|\b(?:my|our) (?:first|earlier|last|previous) (?:answer|reply|message|email)\b", re.I)


def faq_answer(reply: str) -> str:
    """The owner's reply as an FAQ answer: the facts, without apologies and words about this exchange."""
    for sentence in split_sentences(reply):
        if PERSONAL.search(sentence):
            reply = reply.replace(sentence, "", 1)
    lines = [" ".join(line.split()) for line in reply.splitlines()]  # the owner's paragraphs stay
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def propose(session: Session, settings: Settings, draft: Draft) -> Lesson | None:
    """Store a proposal for an edited, approved draft (one per draft)."""
    if not draft.sent_text or session.exec(select(Lesson.id).where(Lesson.draft_id == draft.id)).first():
        return None
    message = session.get(Message, draft.message_id)
    question = question_of(message)
    folder = settings.knowledge_dir
    reply = body_of(draft.sent_text)  # greeting and sign-off are the channel's, never knowledge
    if not draft.text.strip() or new_figures(draft.text, draft.sent_text):
        answer = faq_answer(reply)
        if not answer:
            return None  # nothing but words to this one customer: nothing to learn
        path, addition = FAQ_FILE, f"## {question}\n{answer}\n"
    else:
        path = EXAMPLES_FILE
        addition = json.dumps({"customer": (message.new_text or message.text).strip()[:1000],
                               "reply": reply}, ensure_ascii=False) + "\n"
    lesson = Lesson(draft_id=draft.id, kind="faq" if path == FAQ_FILE else "example", path=path,
                    addition=addition, diff=diff_for(folder / path, addition))
    session.add(lesson)
    session.flush()
    return lesson


def _joined(current: str, addition: str, path: str) -> str:
    if not current:
        return addition
    separator = "\n" if path.endswith(".md") else ""
    return current.rstrip("\n") + "\n" + separator + addition


def diff_for(file: Path, addition: str) -> str:
    current = file.read_text(encoding="utf-8") if file.exists() else ""
    after = _joined(current, addition, file.name)
    return "".join(difflib.unified_diff(current.splitlines(True), after.splitlines(True),
                                        fromfile=f"a/{file.name}", tofile=f"b/{file.name}", n=2))


def proposed(session: Session, limit: int = 20) -> list[Lesson]:
    return list(session.exec(select(Lesson).where(Lesson.status == "proposed")
                             .order_by(col(Lesson.id)).limit(limit)).all())


def accept(session: Session, settings: Settings, lesson_id: int) -> Path:
    """Write the lesson into the knowledge folder; returns the file (the caller re-indexes)."""
    lesson = _open_lesson(session, lesson_id)
    file = settings.knowledge_dir / lesson.path
    current = file.read_text(encoding="utf-8") if file.exists() else ""
    file.write_text(_joined(current, lesson.addition, lesson.path), encoding="utf-8")
    lesson.status, lesson.decided_at = "accepted", utcnow()
    return file


def dismiss(session: Session, lesson_id: int) -> None:
    lesson = _open_lesson(session, lesson_id)
    lesson.status, lesson.decided_at = "dismissed", utcnow()


def _open_lesson(session: Session, lesson_id: int) -> Lesson:
    lesson = session.get(Lesson, lesson_id)
    if lesson is None:
        raise LessonError(f"There is no lesson {lesson_id}.")
    if lesson.status != "proposed":
        raise LessonError(f"Lesson {lesson_id} was already {lesson.status}.")
    return lesson
