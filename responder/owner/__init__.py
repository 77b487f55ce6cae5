"""Step 7 of the flow: the owner's side: the approval queue, notifications and reminders, the
owner's replies by mail, the digest, lessons from edits, feedback, signed links and metrics."""
