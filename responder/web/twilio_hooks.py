"""Twilio's webhooks on the daemon's web server: inbound texts and delivery status callbacks.

Sits at the edge (Zulip's gateway, Chatwoot's Twilio callback): every request is read with a size
cap, checked against its ``X-Twilio-Signature`` (``channels.twilio.webhook``), stored idempotently
in one transaction and answered at once - empty TwiML for a message, 200 for a status. The
process job drafts later (``on_inbound`` wakes it); nothing is drafted or sent in a request.
With the database away, a checked text is kept in the data folder's spool (``responder.intake.spool``)
and still answered 200, since Twilio never sends an inbound webhook again.

Routes: ``POST /twilio/sms`` and ``/twilio/whatsapp`` (one handler), ``POST /twilio/status``.
Refusals store nothing, are logged with their reason and answered with a plain status:
403 not signed by Twilio (or no public URL / auth token to check against: fail closed),
400 unreadable form or no MessageSid, 413 body over 64 KB, 415 not a form.
"""
from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from channels.twilio.webhook import (
    EMPTY_TWIML,
    MAX_BODY_BYTES,
    DeliveryStatus,
    FormParams,
    WebhookRefused,
    decode_form,
    is_forward,
    read_inbound,
    read_status,
    signature_error,
    signed_url,
)
from responder.core.db import DatabaseUnavailable
from responder.core.errors import ConfigError
from responder.core.models import Outbox
from responder.core.settings import Settings
from responder.core.text import normalize_phone
from responder.intake import spool
from responder.intake.store import store_record
from responder.ops.context import Context
from responder.understand import customers
from responder.web.pages import state

log = logging.getLogger("deskhand.twilio")
router = APIRouter()


async def read_body(request: Request) -> bytes:
    """The body, refused past ``MAX_BODY_BYTES`` before it is all read."""
    declared = request.headers.get("content-length", "").strip()
    # ASCII digits only ("²".isdigit() is true, int("²") raises) and no 5,000-digit int() (it raises too).
    if declared.isascii() and declared.isdigit() and (len(declared) > 12 or int(declared) > MAX_BODY_BYTES):
        raise WebhookRefused(413, f"the request body is over {MAX_BODY_BYTES // 1024} KB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise WebhookRefused(413, f"the request body is over {MAX_BODY_BYTES // 1024} KB")
        chunks.append(chunk)
    return b"".join(chunks)


async def verified_form(request: Request, settings: Settings) -> FormParams:
    """The form of a request Twilio signed; ``WebhookRefused`` otherwise (fail closed: there is
    no setting that skips the check)."""
    base = settings.twilio.public_url or settings.web.public_url
    if not base:
        raise WebhookRefused(403, "no public URL to check Twilio's signature against: set [twilio] public_url "
                                  "to the URL Twilio calls (e.g. https://help.example.com)")
    try:
        token = settings.twilio.auth_token()
    except ConfigError as exc:
        raise WebhookRefused(403, f"can't check Twilio's signature: {exc}") from None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise WebhookRefused(415, "expected a form (application/x-www-form-urlencoded), as Twilio sends")
    params = decode_form(await read_body(request))
    url = signed_url(base, request.url.path, request.url.query)
    why = signature_error(token=token, url=url, params=params, signature=request.headers.get("x-twilio-signature"),
                          settings_header=request.headers.get("x-twilio-webhooks-signature-settings"))
    if why:
        raise WebhookRefused(403, why)
    return params


def refuse(request: Request, refused: WebhookRefused) -> Response:
    log.warning("refused Twilio request to %s (%d): %s", request.url.path, refused.status, refused.reason)
    # A forger learns nothing from a 403; Twilio's debugger shows the others' reasons to the owner.
    text = "Forbidden: not signed by Twilio" if refused.status == 403 else refused.reason
    return PlainTextResponse(text, status_code=refused.status)


def store_inbound(ctx: Context, record) -> int | None:
    """The new message's id, or None when this MessageSid is already stored (a Twilio retry)."""
    try:
        with ctx.db.transaction() as session:
            message = store_record(session=session, record=record)
            return message.id if message is not None else None
    except IntegrityError:  # the same retry stored by a parallel request a moment ago
        return None


def kick_inbound(st) -> None:
    """Wake the daemon's process job (its 5-second timer runs it anyway)."""
    kick = getattr(st, "on_inbound", None)
    if kick is None:
        return
    try:
        kick()
    except Exception:  # the message is committed; the process job's timer picks it up
        log.exception("waking the process job failed; the message is processed on its next run")


@router.post("/twilio/sms")
@router.post("/twilio/whatsapp")
async def inbound_message(request: Request) -> Response:
    st = state(request)
    try:
        params = await verified_form(request, st.ctx.settings)
        record = read_inbound(params, path=request.url.path)
    except WebhookRefused as refused:
        return refuse(request, refused)
    try:
        message_id = await run_in_threadpool(store_inbound, st.ctx, record)
    except DatabaseUnavailable as away:
        # Twilio doesn't retry an inbound webhook: keep the checked text on disk and say 200;
        # the process job stores it when the database answers (responder.intake.spool). If the disk
        # can't take it either, the 503 stands.
        try:
            path = await run_in_threadpool(spool.keep, st.ctx.settings, record)
        except OSError as exc:
            log.error("database away and %s could not be spooled (%s): answered 503", record.provider_id, exc)
            raise away from None
        log.warning("database away: %s %s kept in %s until it is back", record.channel, record.provider_id,
                    path.parent)
        return Response(EMPTY_TWIML, media_type="text/xml")
    if message_id is None:
        log.info("Twilio sent %s again: already stored, answered without storing", record.provider_id)
    else:
        log.info("stored %s %s from %s as message %d%s", record.channel, record.provider_id, record.sender,
                 message_id, f" with {len(record.attachments)} attachment(s)" if record.attachments else "")
        kick_inbound(st)
    return Response(EMPTY_TWIML, media_type="text/xml")


def apply_status(ctx: Context, update: DeliveryStatus) -> str:
    """Record a delivery status on the outbox row(s) Twilio accepted as ``update.sid``."""
    with ctx.db.transaction() as session:
        rows = session.exec(select(Outbox).where(Outbox.provider_id == update.sid)).all()
        if not rows:
            return "unknown"
        result = "stale"
        for row in rows:
            if not is_forward(row.delivery_status, update.status):
                continue
            row.delivery_status, result = update.status, "updated"
            if update.error:
                row.delivery_error = update.error
            if update.error and update.error.startswith("21610"):  # Twilio: the number opted out
                identity = customers.phone_identity(session, normalize_phone(row.recipient))
                if identity is not None:
                    customers.apply(session, identity, "stop")
        return result


@router.post("/twilio/status")
async def delivery_status(request: Request) -> Response:
    st = state(request)
    try:
        update = read_status(await verified_form(request, st.ctx.settings))
    except WebhookRefused as refused:
        return refuse(request, refused)
    result = await run_in_threadpool(apply_status, st.ctx, update)
    if result == "unknown":
        # 200 all the same: Twilio would retry, and the row will never appear.
        log.info("delivery status %s for %s, which we did not send (or no longer have)", update.status, update.sid)
    elif result == "stale":
        log.info("delivery status %s for %s arrived late: a later status is already recorded",
                 update.status, update.sid)
    else:
        log.info("delivery status of %s: %s%s", update.sid, update.status, f" ({update.error})" if update.error else "")
    return Response(status_code=200)
