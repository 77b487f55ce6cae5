"""A TCP fault proxy for the fault tests: it sits between the code under test and a real server.

``FaultProxy(host, port)`` listens on a free port on 127.0.0.1 and forwards bytes both ways to
the target (Dovecot, aiosmtpd); the daemon's settings point at the proxy, and the test injects
the network faults a real server never produces on demand (each one shot):

    cut_all()                          reset every open connection now (RST to both sides)
    cut_on(pattern, from_server=True)  reset once ``pattern`` came from the server: the client
                                       holds a partial reply (mid-FETCH)
    cut_on(pattern, from_server=False, swallow_reply=True)
                                       the server gets the bytes holding ``pattern`` and answers;
                                       the answer is dropped and the line reset (reset after DATA)
    cut_after_bytes(n)                 the next connection is reset after n bytes from the server
    refuse() / accept()                new connections are reset at once (a server that is down)
    answer_and_close(banner)           new connections get ``banner`` and are closed (SMTP 421)

One thread per connection does all of that connection's socket work (a selector over both
ends); the test's thread only sets flags. For assertions: ``connections`` (forwarded),
``refused``, ``cuts``, and ``wait_seen`` (e.g. ``b"+ idling"`` once the client is in IDLE).
"""
from __future__ import annotations

import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field

from servers import free_port

LOOPBACK = "127.0.0.1"


@dataclass
class _Rule:
    pattern: bytes
    from_server: bool
    nth: int
    swallow_reply: bool


@dataclass
class _Link:
    client: socket.socket
    upstream: socket.socket
    cut_after: int | None = None        # reset after this many bytes from the server
    cut_requested: bool = False
    swallowing: bool = False            # the server's next bytes are dropped, then reset
    from_server: int = 0
    tails: dict = field(default_factory=lambda: {True: b"", False: b""})
    seen: dict = field(default_factory=lambda: {True: bytearray(), False: bytearray()})
    closed: bool = False


class FaultProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.host = LOOPBACK
        # A port never handed out before in this process: the daemon keeps per-server state
        # (its backoff) by host and port, which must not leak from one test into the next.
        self.port = free_port()
        self._listener = socket.create_server((LOOPBACK, self.port))
        self._listener.settimeout(0.1)
        self._cond = threading.Condition()
        self._links: list[_Link] = []
        self._rules: list[_Rule] = []
        self._cut_next: list[int] = []
        self._refusing = False
        self._banner: bytes | None = None
        self._closing = False
        self.connections = self.refused = self.cuts = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> "FaultProxy":
        self._spawn(self._accept_loop)
        return self

    def close(self) -> None:
        with self._cond:
            self._closing = True
            for link in self._links:
                link.cut_requested = True
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def cut_all(self, timeout: float = 5.0) -> int:
        """Reset every open connection; returns how many, once they are really gone."""
        with self._cond:
            live = [link for link in self._links if not link.closed]
            for link in live:
                link.cut_requested = True
            if not self._cond.wait_for(lambda: all(link.closed for link in live), timeout):
                raise TimeoutError("connections still open after cut_all")
        return len(live)

    def cut_on(self, pattern: bytes, *, from_server: bool = True, nth: int = 1,
               swallow_reply: bool = False) -> None:
        """Reset the connection in which ``pattern`` passes for the ``nth`` time (one shot)."""
        with self._cond:
            self._rules.append(_Rule(pattern, from_server, nth, swallow_reply))

    def cut_after_bytes(self, n: int) -> None:
        """The next connection is reset after ``n`` bytes from the server."""
        with self._cond:
            self._cut_next.append(n)

    def refuse(self) -> None:
        with self._cond:
            self._refusing = True

    def answer_and_close(self, banner: bytes) -> None:
        with self._cond:
            self._banner = banner

    def clear(self) -> None:
        """Forget every armed fault: plain forwarding again (``accept`` reads better after ``refuse``)."""
        with self._cond:
            self._rules.clear()
            self._cut_next.clear()
            self._refusing, self._banner = False, None

    accept = clear

    @property
    def armed(self) -> int:
        """Faults still waiting to fire (pattern rules and byte cuts)."""
        with self._cond:
            return len(self._rules) + len(self._cut_next)

    def count_seen(self, pattern: bytes, *, from_server: bool = True) -> int:
        with self._cond:  # an RLock: wait_for's predicate may call this while holding it
            return sum(bytes(link.seen[from_server]).count(pattern) for link in self._links)

    def wait_seen(self, pattern: bytes, *, from_server: bool = True, count: int = 1,
                  timeout: float = 10.0) -> None:
        self.wait_for(lambda p: p.count_seen(pattern, from_server=from_server) >= count, timeout,
                      f"{pattern!r} seen {count} time(s)")

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "a condition") -> None:
        """Wait until ``predicate(proxy)`` holds (re-checked whenever traffic or a connection moves)."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError(f"timed out waiting for {what}")

    # -- the work -------------------------------------------------------------------------------

    def _spawn(self, target, *args) -> None:
        self._threads.append(threading.Thread(target=target, args=args, name="faultproxy", daemon=True))
        self._threads[-1].start()

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._cond:
                refusing, banner = self._refusing, self._banner
                self.refused += refusing or banner is not None
                self._cond.notify_all()
            if refusing or banner is not None:
                if banner is not None:
                    _answer(client, banner)
                else:
                    _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)  # the real server is down: the client sees what it would see
                continue
            with self._cond:
                link = _Link(client, upstream, cut_after=self._cut_next.pop(0) if self._cut_next else None)
                self._links.append(link)
                self.connections += 1
                self._cond.notify_all()
            self._spawn(self._serve, link)

    def _serve(self, link: _Link) -> None:
        selector = selectors.DefaultSelector()
        for sock in (link.client, link.upstream):
            sock.setblocking(True)
            selector.register(sock, selectors.EVENT_READ)
        open_ends = {link.client, link.upstream}
        try:
            while open_ends and not link.cut_requested:
                for key, _ in selector.select(timeout=0.05):
                    sock = key.fileobj
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    other = link.upstream if sock is link.client else link.client
                    if not data:  # half-close: pass the FIN on and keep the other direction
                        selector.unregister(sock)
                        open_ends.discard(sock)
                        _quietly(other.shutdown, socket.SHUT_WR)
                        continue
                    self._forward(link, data, from_server=sock is link.upstream, to=other)
                    if link.cut_requested:
                        break
        finally:
            selector.close()
            with self._cond:
                if link.cut_requested:
                    self.cuts += 1
                    _reset(link.client)
                    _reset(link.upstream)
                else:
                    link.client.close()
                    link.upstream.close()
                link.closed = True
                self._cond.notify_all()

    def _forward(self, link: _Link, data: bytes, *, from_server: bool, to: socket.socket) -> None:
        with self._cond:
            if from_server and link.swallowing:  # the reply the client must never get
                link.cut_requested = True
                return
            keep, cut, swallow = len(data), False, False
            if from_server and link.cut_after is not None:
                if link.from_server + len(data) >= link.cut_after:
                    keep, cut = max(link.cut_after - link.from_server, 0), True
            for rule in list(self._rules):
                if rule.from_server != from_server:
                    continue
                end = _nth_end(link.tails[from_server], data[:keep], rule)
                if end is not None:
                    self._rules.remove(rule)
                    if rule.swallow_reply:  # the whole chunk: the server must get a complete command
                        swallow = True
                    else:
                        keep, cut = end, True
                    break
            sent = data[:keep]
            link.seen[from_server] += sent
            tail_len = max((len(r.pattern) for r in self._rules), default=1) - 1
            link.tails[from_server] = (link.tails[from_server] + sent)[-tail_len:] if tail_len else b""
            if from_server:
                link.from_server += len(sent)
            self._cond.notify_all()
        try:
            to.sendall(sent)
        except OSError:
            cut = True
        with self._cond:
            if cut:
                link.cut_requested = True
            if swallow:
                link.swallowing = True


def _nth_end(tail: bytes, chunk: bytes, rule: _Rule) -> int | None:
    """Count ``rule.pattern`` in ``chunk`` (joined to the previous tail); at the nth, the index in
    ``chunk`` just past the pattern. Decrements ``rule.nth`` for matches short of it."""
    buffer, start = tail + chunk, 0
    while True:
        at = buffer.find(rule.pattern, start)
        if at < 0:
            return None
        end = at + len(rule.pattern)
        start = at + 1
        if end <= len(tail):
            continue  # wholly in the tail: counted with the previous chunk
        rule.nth -= 1
        if rule.nth <= 0:
            return end - len(tail)


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed server or a middlebox would."""
    _quietly(sock.setsockopt, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _quietly(sock.close)


def _answer(sock: socket.socket, banner: bytes) -> None:
    _quietly(sock.sendall, banner)
    _quietly(sock.shutdown, socket.SHUT_WR)  # a FIN after the banner: the client reads it whole
    sock.close()


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except OSError:
        pass

