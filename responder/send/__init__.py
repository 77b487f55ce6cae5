"""Step 6 of the flow: the outbox (every reply sent at most once, every failure a row) and the one
send job that hands each claimed row to its channel."""
