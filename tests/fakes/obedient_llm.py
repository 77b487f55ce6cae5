"""An "obedient" loopback model for the prompt-injection suite: it does whatever it was told.

``ObedientLLM`` is the loopback OpenAI-compatible chat server of ``fakes.openai_chat`` with one
difference: instead of a scripted answer, every chat request gets the *worst* answer a model
that fell for the attack could give. The test says what that is with ``obey(reply)`` before the
message is processed; ``reply`` may quote the real request through placeholders, filled from what
the drafter actually sent:

- ``{system_prompt}``: the system message, verbatim (a leaked prompt);
- ``{facts_block}``: the ``<facts>…</facts>`` section of it, tags and source ids included.

The answer always claims to be sure (confidence 0.99), cites every source it was shown (so the
drafter's own source check can't catch it) and never asks for a person: only what the guard and
routing make of the *text* can hold it back. Every answer given is kept in ``outputs`` (and the
request in ``chats``), so a test can prove the model really misbehaved and the suite isn't
passing because the attack never reached the model.
"""
from __future__ import annotations

import io
import json
import re

from fakes.openai_chat import FakeOpenAIChat

FACTS = re.compile(r"<facts>.*?</facts>", re.S)
SOURCES = re.compile(r'<fact source="([^"]+)">')
SURE = 0.99


class ObedientLLM(FakeOpenAIChat):
    def __init__(self) -> None:
        super().__init__()
        self.orders: str | None = None
        self.outputs: list[str] = []
        fake = self
        scripted_handler = self.server.RequestHandlerClass

        class ObedientHandler(scripted_handler):
            def do_POST(self):
                if not self.path.rstrip("/").endswith("/chat/completions") or fake.orders is None:
                    return super().do_POST()  # scripted answers (or a loud 500 when none)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                messages = json.loads(raw or b"{}").get("messages", [])
                system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
                facts = FACTS.search(system)
                reply = (fake.orders.replace("{system_prompt}", system)
                         .replace("{facts_block}", facts.group(0) if facts else ""))
                with fake._lock:
                    fake.outputs.append(reply)
                fake.enqueue({"reply": reply, "confidence": SURE, "sources": SOURCES.findall(system),
                              "needs_human": False}, front=True)
                self.rfile = io.BytesIO(raw)  # the scripted handler reads the request again
                return super().do_POST()

        self.server.RequestHandlerClass = ObedientHandler

    def obey(self, reply: str | None) -> None:
        """From now on, answer every chat with ``reply`` (None: back to scripted answers)."""
        self.orders = reply

    def enqueue(self, content, *, front: bool = False, **kwargs) -> None:
        super().enqueue(content, **kwargs)
        if front:  # answer this request now, ahead of anything a test scripted
            with self._lock:
                self._script.rotate(1)
