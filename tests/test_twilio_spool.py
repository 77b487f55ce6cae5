"""A text that arrives while PostgreSQL is down is not lost: the signed webhook is answered 200,
the text kept in the data folder's spool, and stored (once) when the database is back. Real
PostgreSQL (a private cluster, stopped and started), the real app, real Twilio signatures."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from helpers import write_settings
from pgcluster import pg_cluster  # noqa: F401  (fixture)
from sqlmodel import select
from texts import (
    PUBLIC,
    SHOP,
    TOKEN,
    TOKEN_ENV,
    TWIML,
    new_sid,
    signed_post,
    sms_form,
)

from responder.core.models import Message
from responder.core.settings import load_settings
from responder.intake import spool
from responder.ops.context import build_context
from responder.web import create_app


@pytest.mark.timeout(180)
def test_texts_during_a_database_outage_are_spooled_and_stored_once(pg_cluster, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    extra = (f'[twilio]\naccount_sid = "AC{"0" * 31}1"\nauth_token_env = "{TOKEN_ENV}"\nsms_from = "{SHOP}"\n'
             f'public_url = "{PUBLIC}"\n')
    ctx = build_context(load_settings(write_settings(tmp_path, database_url=pg_cluster.url, extra=extra)))
    client = TestClient(create_app(ctx))

    def texts() -> list[str]:
        with ctx.db.transaction() as session:
            return [m.text for m in session.exec(select(Message).order_by(Message.id)).all()]

    assert signed_post(client, "/twilio/sms", sms_form("before the outage")).text == TWIML
    pg_cluster.stop()
    during = sms_form("while the database restarts", sid=new_sid())
    answer = signed_post(client, "/twilio/sms", during)
    assert answer.status_code == 200 and answer.text == TWIML, "Twilio would not send it again"
    [kept] = spool.waiting(ctx.settings)
    assert during["MessageSid"] in kept.name
    forged = signed_post(client, "/twilio/sms", dict(during, Body="forged"), token="not-the-token")
    assert forged.status_code == 403 and len(spool.waiting(ctx.settings)) == 1  # still checked first

    pg_cluster.start()
    assert spool.drain(ctx) == 1 and spool.waiting(ctx.settings) == []
    assert texts() == ["before the outage", "while the database restarts"]
    # Twilio's own retry of the same MessageSid, and a second drain, add nothing.
    assert signed_post(client, "/twilio/sms", during).text == TWIML
    assert spool.drain(ctx) == 0 and len(texts()) == 2

    # A spool file that can't be read is set aside with the reason, not retried forever.
    (spool.spool_dir(ctx.settings) / "SMbroken.json").write_text("{not json", encoding="utf-8")
    assert spool.drain(ctx) == 0 and spool.waiting(ctx.settings) == []
    assert (spool.spool_dir(ctx.settings) / "bad" / "SMbroken.json").exists()

    # Database away and the spool unwritable too: then, and only then, a 503.
    pg_cluster.stop()
    blocked = spool.spool_dir(ctx.settings)
    for path in sorted(blocked.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    blocked.rmdir()
    blocked.write_text("not a folder")
    assert signed_post(client, "/twilio/sms", sms_form("nowhere to keep it")).status_code == 503
    pg_cluster.start()
    assert len(texts()) == 2
    ctx.db.dispose()
