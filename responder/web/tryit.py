"""Try it: the owner writes as a customer and sees what Deskhand would do, with nothing sent.

The first thing a fresh install offers (no mailbox needed). The message goes through the same
pipeline as live mail via ``responder.ops.evaluate.run_cases``, which uses a throwaway database and
marks would-be replies sent instead of sending them; the shop's real database is never touched.
It is the one page that may call the drafter (an LLM when configured), so it runs in a worker
thread, one trial at a time (to bound the drafter's cost); ``run_cases`` runs on a database and a
clock of its own, so the daemon's jobs keep the real ones.
"""
from __future__ import annotations

import copy

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from responder.ops.evaluate import run_cases
from responder.web.auth import require_owner_or_fresh
from responder.web.pages import WebState, page
from responder.web.security import checked_form, form_text

router = APIRouter()
CHANNELS = ("email", "sms", "whatsapp", "chat")
MAX_TEXT = 20_000
DEFAULT_SENDER = {"email": "customer@example.org", "sms": "+15550100000", "whatsapp": "+15550100000",
                  "chat": "chat:try-it-visitor"}


def _trial(st: WebState, case: dict) -> dict:
    # A shallow copy, so nothing here can touch the shared context (run_cases copies it too),
    # and the daemon's jobs and other requests keep using the real one meanwhile.
    trial_ctx = copy.copy(st.ctx)
    with st.try_lock:
        return run_cases(trial_ctx, [case])[-1]


def _form_page(request: Request, *, status: int = 200, values: dict | None = None, result: dict | None = None,
               error: str = ""):
    values = values or {"channel": "email", "sender": "", "subject": "", "text": ""}
    return page(request, "try.html.j2", status=status, values=values, result=result, error=error,
                channels=CHANNELS, max_text=MAX_TEXT)


@router.get("/try")
def try_page(request: Request, st: WebState = Depends(require_owner_or_fresh)):
    return _form_page(request)


@router.post("/try")
async def try_message(request: Request, st: WebState = Depends(require_owner_or_fresh),
                      form=Depends(checked_form)):
    channel = str(form.get("channel") or "email")
    raw_text = form_text(form, "text", MAX_TEXT + 1)
    values = {"channel": channel if channel in CHANNELS else "email", "sender": form_text(form, "sender", 320).strip(),
              "subject": form_text(form, "subject", 500).strip(), "text": raw_text[:MAX_TEXT]}
    if channel not in CHANNELS:
        return _form_page(request, status=400, values=values, error="Choose email, SMS or WhatsApp.")
    if not raw_text.strip():
        return _form_page(request, status=400, values=values, error="Write the customer's message first.")
    if len(raw_text) > MAX_TEXT:
        return _form_page(request, status=400, values=values,
                          error=f"That message is longer than {MAX_TEXT:,} characters; shorten it.")
    case = {"id": "try", "channel": channel, "from": values["sender"] or DEFAULT_SENDER[channel],
            "subject": values["subject"] if channel == "email" else "", "turns": [values["text"]]}
    result = await run_in_threadpool(_trial, st, case)
    return _form_page(request, values=values, result=result)
