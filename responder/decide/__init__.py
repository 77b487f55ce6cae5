"""Step 5 of the flow: is the draft safe and may it go out by itself? The claim guard, the routing
rule table, opt-out for texts, and the cost and abuse limits."""
