"""Step 1 of the flow: store what arrived, idempotently, before anything else happens (Zulip's
accept-then-process): inbound mail and texts as rows, and texts spooled while the database is away."""
