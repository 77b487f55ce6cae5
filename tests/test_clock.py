"""The clock: tests move the shared one; eval and Try it move a private one that the daemon's
threads never see."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from responder.core.clock import clock, private_clock, utcnow


def test_a_private_clock_does_not_move_other_threads():
    seen: dict[str, datetime] = {}
    inside, checked = threading.Event(), threading.Event()

    def trial():
        with private_clock():
            clock.freeze(datetime(2020, 1, 1, tzinfo=timezone.utc))
            clock.advance(days=3)
            seen["trial"] = utcnow()
            inside.set()
            checked.wait(10)
        seen["after"] = utcnow()

    worker = threading.Thread(target=trial)
    worker.start()
    assert inside.wait(10)
    seen["daemon"] = utcnow()  # another thread while the trial's clock is frozen in 2020
    checked.set()
    worker.join(10)
    assert seen["trial"] == datetime(2020, 1, 4, tzinfo=timezone.utc)
    real = datetime.now(timezone.utc)
    assert abs(seen["daemon"] - real) < timedelta(minutes=1)
    assert abs(seen["after"] - real) < timedelta(minutes=1)


def test_the_shared_clock_still_moves_for_tests():
    try:
        clock.freeze(datetime(2021, 6, 1, tzinfo=timezone.utc))
        clock.advance(hours=2)
        assert utcnow() == datetime(2021, 6, 1, 2, tzinfo=timezone.utc)
    finally:
        clock.reset()
    assert abs(utcnow() - datetime.now(timezone.utc)) < timedelta(minutes=1)
