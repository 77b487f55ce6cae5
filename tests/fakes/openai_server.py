"""A loopback OpenAI-compatible server for tests, driven through the real ``openai`` client.

``/v1/embeddings`` returns deterministic bag-of-words vectors (words hashed into ``dim``
buckets), so texts that share words are similar and a test can reason about rankings. Every
request is recorded in ``requests``; ``fail_next(status, count)`` answers the next requests with
an error status (429, 500…) to exercise retries.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def bag_of_words(text: str, dim: int) -> list[float]:
    vector = [0.0] * dim
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


class FakeOpenAI:
    def __init__(self, dim: int = 64):
        self.dim = dim
        self.requests: list[tuple[str, dict]] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    fake.requests.append((self.path, body))
                    status = fake._failures.pop(0) if fake._failures else 200
                if status != 200:
                    return self._send(status, {"error": {"message": f"injected {status}", "type": "fake"}})
                if self.path.endswith("/embeddings"):
                    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    data = [{"object": "embedding", "index": i, "embedding": bag_of_words(t, fake.dim)}
                            for i, t in enumerate(texts)]
                    return self._send(200, {"object": "list", "data": data, "model": body.get("model"),
                                            "usage": {"prompt_tokens": 1, "total_tokens": 1}})
                return self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _send(self, status: int, payload: dict):
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def fail_next(self, status: int, count: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
