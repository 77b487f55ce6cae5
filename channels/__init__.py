"""Channels: how Deskhand talks to customers (email today)."""
