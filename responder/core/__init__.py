"""The core every stage stands on: settings, tables, the database, errors, the clock, logs, locks,
templates and server backoff. Imports nothing else of Deskhand."""
