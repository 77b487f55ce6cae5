"""One customer in the browser: their email addresses and numbers, their threads on every
channel, and a form to link them with another customer.

Behind the owner's login; the form carries the session's CSRF token like every owner form.
Linking goes through ``responder.understand.customers`` (the older customer is kept, the other merged into
it) in the request's one transaction, then the page of the kept customer is shown.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse
from sqlmodel import col, func, select
from starlette.requests import Request

from responder.core.models import Customer, Message, Thread
from responder.understand import customers
from responder.web.auth import require_owner
from responder.web.pages import WebState, clear_page, flash, page
from responder.web.security import checked_form, form_text

router = APIRouter()
ACTOR = "owner (web)"


def customer_page(request: Request, st: WebState, customer_id: int, *, status: int = 200, error: str = "",
                  other: str = ""):
    with st.ctx.db.transaction() as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            return clear_page(request, "No such customer", f"There is no customer {customer_id} (customers linked "
                              "into another one are shown under that one).", status=404,
                              link=("/conversations", "All conversations"))
        threads = session.exec(select(Thread).where(Thread.customer_id == customer.id)
                               .order_by(col(Thread.updated_at).desc(), col(Thread.id).desc())).all()
        counts = dict(session.exec(select(Message.thread_id, func.count()).where(Message.customer_id == customer.id)
                                   .group_by(Message.thread_id)).all())
        values = dict(customer=customer, identities=customers.identities(session, customer.id),
                      threads=[dict(thread=t, messages=counts.get(t.id, 0)) for t in threads],
                      requests=customers.link_requests(session, customer.id),
                      recent=customers.customer_history(session, customer_id=customer.id, before_message_id=None,
                                                        limit=10))
    return page(request, "customer.html.j2", status=status, error=error, other=other, **values)


@router.get("/customers/{customer_id}")
def show_customer(request: Request, customer_id: int, st: WebState = Depends(require_owner)):
    return customer_page(request, st, customer_id)


@router.post("/customers/{customer_id}/link")
def link_customer(request: Request, customer_id: int, st: WebState = Depends(require_owner),
                  form=Depends(checked_form)):
    other = form_text(form, "other", 320).strip()
    email = other if "@" in other else None
    phone = None if email else customers.phone_of(other)
    if not email and not phone:
        return customer_page(request, st, customer_id, status=400, other=other,
                             error="Write an email address, or a phone number with its country code "
                                   "(like +14155550100).")
    try:
        with st.ctx.db.transaction() as session:
            this = session.get(Customer, customer_id)
            found = customers.find_customer(session, email=email, phone=phone)
            if this is None:
                raise customers.CustomerError(f"There is no customer {customer_id}.")
            if found is None:
                raise customers.CustomerError(f"No customer has {'the email address' if email else 'the number'} "
                                              f"{email.strip().lower() if email else phone} yet.")
            kept = customers.link_pair(session, this, found, actor=ACTOR)
            kept_id, merged_id = kept.id, max(this.id, found.id)
    except customers.CustomerError as exc:
        return customer_page(request, st, customer_id, status=409, other=other, error=str(exc))
    flash(request, f"Linked: customer {merged_id} is now part of customer {kept_id} — one history for their "
                   "emails and texts.")
    return RedirectResponse(f"/customers/{kept_id}", status_code=303)
