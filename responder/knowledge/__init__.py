"""Step 3 of the flow: the shop's knowledge folder read into entries (FAQ, policies, the catalog,
tone examples), embedded into the index, and retrieved for a question."""
