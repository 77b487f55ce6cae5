"""A loopback OpenAI-compatible chat server for tests: ``FakeOpenAI`` plus ``/v1/chat/completions``.

Used by ``tests/test_openai_backend.py`` to drive the real ``openai`` client the way the drafter
does in production. Replies are scripted: each ``enqueue(...)`` answers the next chat request,
in order, as a model reply (``content``: a string, or a dict sent as its JSON text, or ``None``
for a null content) or as an error (``status`` 429/500…, with an optional ``Retry-After``). A
``delay_s`` beyond the client's timeout makes a timeout. With nothing queued the server answers
500, so a test that forgot to script a reply fails loudly. Every chat request is recorded in
``chats`` with its headers (the bearer token) and JSON body (the prompt).
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from fakes.openai_server import FakeOpenAI


@dataclass
class Scripted:
    content: str | dict | None
    status: int = 200
    delay_s: float = 0.0
    usage: tuple[int, int] = (10, 5)
    retry_after: str | None = None
    finish_reason: str = "stop"


@dataclass
class ChatRequest:
    path: str
    headers: dict[str, str]
    body: dict = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """Every message's content, joined: what the model was shown."""
        return "\n".join(m.get("content") or "" for m in self.body.get("messages", []))

    def message(self, role: str) -> str:
        return next(m["content"] for m in self.body.get("messages", []) if m.get("role") == role)


class FakeOpenAIChat(FakeOpenAI):
    def __init__(self, dim: int = 64):
        super().__init__(dim)
        self.chats: list[ChatRequest] = []
        self._script: deque[Scripted] = deque()
        fake = self
        base_handler = self.server.RequestHandlerClass

        class ChatHandler(base_handler):
            def do_POST(self):
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return super().do_POST()
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw or b"{}")
                with fake._lock:
                    fake.chats.append(ChatRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    fake.requests.append((self.path, body))
                    step = fake._script.popleft() if fake._script else Scripted("no scripted reply queued", 500)
                if step.delay_s:
                    time.sleep(step.delay_s)
                if step.status != 200:
                    headers = {"Retry-After": step.retry_after} if step.retry_after is not None else {}
                    message = step.content if isinstance(step.content, str) else f"injected {step.status}"
                    return self._reply(step.status, {"error": {"message": message, "type": "fake",
                                                               "code": None}}, headers)
                content = json.dumps(step.content) if isinstance(step.content, dict) else step.content
                prompt, completion = step.usage
                return self._reply(200, {
                    "id": f"chatcmpl-fake-{len(fake.chats)}", "object": "chat.completion",
                    "created": int(time.time()), "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "finish_reason": step.finish_reason,
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion}})

            def _reply(self, status: int, payload: dict, headers: dict[str, str] | None = None):
                raw = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server.RequestHandlerClass = ChatHandler
        # A short poll interval: shutdown() waits for it, and every test shuts a server down.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def enqueue(self, content: str | dict | None, *, status: int = 200, delay_s: float = 0,
                usage: tuple[int, int] = (10, 5), retry_after: float | str | None = None,
                finish_reason: str = "stop") -> None:
        """Script the next chat answer; errors use ``content`` (a string) as the error message."""
        with self._lock:
            self._script.append(Scripted(content, status, delay_s, usage,
                                         None if retry_after is None else str(retry_after), finish_reason))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def __enter__(self) -> "FakeOpenAIChat":
        super().__enter__()
        return self
