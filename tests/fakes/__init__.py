"""Loopback fakes of third-party HTTP APIs, driven through the real client libraries."""
