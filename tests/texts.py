"""What Twilio sends us, for the tests of the webhook and the spool: a captured SMS form and its
signature (``X-Twilio-Signature``, computed with the twilio library's own ``RequestValidator``)."""
from __future__ import annotations

import itertools

from twilio.request_validator import RequestValidator

TOKEN_ENV = "DESKHAND_TEST_TWILIO_TOKEN"
TOKEN = "test-twilio-auth-token-5f1c"
PUBLIC = "https://help.shop.example.test"
SHOP = "+15550100000"
CUSTOMER = "+14155550100"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_sids = itertools.count(1)


def new_sid() -> str:
    return f"SM{next(_sids):032x}"


def sms_form(body: str = "Hi! How much is shipping to Texas?", *, sid: str | None = None, sender: str = CUSTOMER,
             to: str = SHOP, **more) -> dict:
    """What Twilio POSTs for an incoming SMS (the fields of a captured request)."""
    sid = sid or new_sid()
    form = {"ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "",
            "FromZip": "94107", "SmsSid": sid, "FromState": "CA", "SmsStatus": "received", "FromCity": "SAN FRANCISCO",
            "Body": body, "FromCountry": "US", "To": to, "ToZip": "", "NumSegments": "1", "MessageSid": sid,
            "AccountSid": "AC" + "0" * 31 + "1", "From": sender, "ApiVersion": "2010-04-01"}
    form.update(more)
    return form


def signed_post(client, path: str, form: dict, *, url: str | None = None, token: str = TOKEN, headers=None):
    signature = RequestValidator(token).compute_signature(url or PUBLIC + path, form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature, **(headers or {})})
