"""Step 2 of the flow: what a stored message says and who sent it: normalize (parse, strip the
quoted history), the customer and thread, the signals (frustration, a request for a person,
language, injection), and bursts folded into one question."""
