"""Deskhand: the pipeline that turns an inbound customer message into a routed draft.

The packages read as the flow (``pipeline.py`` shows it on one screen)::

    core/        settings, tables, database, errors, clock, logs, locks, templates
    intake/      1. store what arrived (mail, texts), idempotently
    understand/  2. normalize, customer and thread, signals, bursts, the questions asked
    knowledge/   3. the knowledge folder, its index, retrieval
    orders/      3b. order sources (Shopify, WooCommerce, an export file) and the order step:
                 "where is my order?" answered to the order's own customer only
    draft/       4. drafting backends and tone
    decide/      5. the claim guard, answerability, the routing table, opt-out, limits
    send/        6. the outbox and the one send job over every channel
    owner/       7. approvals, owner mail, digest, lessons, feedback, metrics
    pipeline.py  one stored message in, one routed draft out (steps 2-5)
    outcome.py   its last step: the draft stored, the reply or holding note queued
    ops/         the daemon, its jobs, evaluation, privacy and retention
    cli/  web/   the command line and the web pages (nothing imports these)

I/O with customers lives in ``channels/`` (email, Twilio), which imports only ``core``.
The import rules are written down in ``.importlinter`` and checked by the test command.
"""
