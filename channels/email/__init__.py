"""The email channel: parse fetched mail, spot automated mail, send replies."""
