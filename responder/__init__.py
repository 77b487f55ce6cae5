"""Deskhand core: the pipeline that turns an inbound customer message into a routed draft.

Flow: intake (store raw) -> process (parse, resolve customer/thread, signals, draft, route)
-> outbox (send at most once). Pure decisions live here; I/O lives in ``channels/``.
"""
