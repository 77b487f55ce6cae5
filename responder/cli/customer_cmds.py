"""Commands about people: ``customer`` (link, show), ``forget`` (erase a customer) and
``set-password`` (the web pages' login)."""
from __future__ import annotations

import json
import sys
from getpass import getpass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from responder.core.db import Database
from responder.core.models import Customer, Identity
from responder.core.settings import Settings
from responder.ops.privacy import PrivacyError, _audit, find, forget_customer
from responder.owner.password import MIN_LENGTH, store_password
from responder.understand.customers import (
    CustomerError,
    describe,
    find_customer,
    link_pair,
    phone_of,
)


def cmd_forget(settings: Settings, args) -> int:
    """``run.py forget CUSTOMER [--yes]`` (``responder.ops.privacy`` does the erasing). Reads ``args.customer`` and ``args.yes``; asks before erasing unless ``--yes``."""


    db = Database(settings.database_url)
    try:
        db.migrate()
        with db.transaction() as session:
            customer = find(session, args.customer)
            if customer is None:
                print(f"No customer has the address, number or id {args.customer!r}; nothing was erased.",
                      file=sys.stderr)
                return 1
            customer_id = customer.id
            shown = ", ".join(i.value for i in session.exec(select(Identity).where(
                Identity.customer_id == customer_id))) or "no address or number"
            planned = forget_customer(session, customer, dry_run=True)
        print(f"Customer #{customer_id} ({shown}): {planned.summary()}.")
        if not args.yes:
            try:
                answer = input("Erase all of this for good? Type yes to go on: ")
            except EOFError:
                answer = ""
            if answer.strip().lower() != "yes":
                print("Nothing was erased.")
                return 1
        with db.transaction() as session:
            customer = session.get(Customer, customer_id)
            if customer is None:
                print(f"Customer #{customer_id} is already gone.")
                return 0
            erased = forget_customer(session, customer, settings=settings)
    except PrivacyError as exc:
        print(f"{exc} Nothing was erased.", file=sys.stderr)
        return 1
    except IntegrityError:  # a message of theirs was stored meanwhile and points at a row we erased
        print("They wrote while being forgotten, so nothing was erased; run the command again.", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    preview = settings.data_dir / "digest-preview.html"  # `digest --print` may have quoted them
    if preview.exists():
        preview.unlink()
    _audit(settings, {"action": "forget", "customer": customer_id, "erased": dict(erased.counts)})
    print(f"Erased customer #{customer_id}: {erased.summary()}.")
    for note in erased.notes + ["their mail is still in the mailbox and their texts in Twilio's log: "
                                "Deskhand never deletes those; remove them there if you must"]:
        print(f"Note: {note}.")
    return 0


def _lookup(session: Session, *, email: str | None, phone: str | None) -> Customer:
    if phone and not email and not phone_of(phone):
        raise CustomerError(f"{phone!r} is not a phone number with its country code (like +14155550100).")
    found = find_customer(session, email=email, phone=phone)
    if found is None:
        raise CustomerError(f"No customer has the email address {email}." if email else
                            f"No customer has the phone number {phone_of(phone)}.")
    return found


def cmd_customer(settings: Settings, args) -> int:
    """``customer link --email A --phone N`` | ``customer show (--email A | --phone N) [--json]``;
    reads args.action, args.email, args.phone, args.json."""
    if args.action == "link" and not (args.email and args.phone):
        print("customer link needs both --email and --phone.", file=sys.stderr)
        return 2
    if args.action == "show" and bool(args.email) == bool(args.phone):
        print("customer show needs --email or --phone (one of them).", file=sys.stderr)
        return 2
    db = Database(settings.database_url)
    try:
        db.migrate()
        with db.transaction() as session:
            if args.action == "link":
                by_email = _lookup(session, email=args.email, phone=None)
                by_phone = _lookup(session, email=None, phone=args.phone)
                if by_email.id == by_phone.id:
                    print(f"already one customer (#{by_email.id})")
                    return 0
                kept = link_pair(session, by_email, by_phone, actor="owner (cli)")
                print(f"linked: customer #{kept.id} now has the email and texts of customer "
                      f"#{max(by_email.id, by_phone.id)}")
                return 0
            shown = describe(session, _lookup(session, email=args.email, phone=args.phone))
        if getattr(args, "json", False):
            print(json.dumps(shown, ensure_ascii=False))
            return 0
        print(f"customer #{shown['id']} {shown['name'] or '(no name)'}, since {shown['created_at'][:10]}")
        for i in shown["identities"]:
            print(f"  {i['kind']:6} {i['value']}{'  (opted out: STOP)' if i['opted_out'] else ''}")
        for t in shown["threads"]:
            print(f"  thread #{t['id']:<5} {t['channel']:9} {t['messages']:>3} message(s)  {t['updated_at'][:16]}  "
                  f"{t['subject']}")
        return 0
    except CustomerError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        db.dispose()


def cmd_set_password(settings: Settings, args) -> int:
    """``python run.py set-password [--password-stdin]``: reads ``args.password_stdin``."""
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass("New password for the web pages: ")
        if getpass("The same password again: ") != password:
            print("The two passwords differ; nothing was changed.", file=sys.stderr)
            return 1
    if len(password) < MIN_LENGTH:
        print(f"The password must have at least {MIN_LENGTH} characters; nothing was changed.", file=sys.stderr)
        return 1
    db = Database(settings.database_url)
    try:
        db.migrate()
        with db.transaction() as session:
            store_password(session, password)
    finally:
        db.dispose()
    print(f"Password set; log in at {settings.base_url}/login (browsers logged in before are signed out).")
    return 0
