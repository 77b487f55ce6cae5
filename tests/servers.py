"""Real mail servers for the test suite: a private Dovecot (IMAP) and an aiosmtpd capture.

Nothing here mocks a protocol. ``Dovecot`` runs the system's ``dovecot`` binary
in the foreground from a throw-away directory (own config, base_dir, state_dir,
log, Maildir, passwd-file), listening on a free port on 127.0.0.1.
``SmtpCapture`` is an aiosmtpd ``Controller`` on a free port that records every
accepted message and can be told to refuse the next N transactions.

Fixtures built on these live in ``tests/conftest.py``.
"""

from __future__ import annotations

import atexit
import email
import email.message
import email.policy
import functools
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pytest

__all__ = [
    "CapturedMessage",
    "Dovecot",
    "SmtpCapture",
    "client_ssl_context",
    "dovecot_binary",
    "dovecot_version",
    "free_port",
    "insecure_client_ssl_context",
    "require_dovecot",
    "self_signed_cert",
]

LOOPBACK = "127.0.0.1"
# The test account. example.test is a reserved domain (RFC 6761).
DEFAULT_USER = "shop@example.test"
DEFAULT_PASSWORD = "imap-test-pw-41"

# Every live server, so that an interrupted session does not leave daemons behind.
_LIVE: "set[Dovecot | SmtpCapture]" = set()
_LIVE_LOCK = threading.Lock()


def _register(server) -> None:
    with _LIVE_LOCK:
        _LIVE.add(server)


def _unregister(server) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(server)


@atexit.register
def _shutdown_leftovers() -> None:
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
    for server in leftovers:
        try:
            server.close()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


# --------------------------------------------------------------------------- ports

_issued_ports: set[int] = set()
_port_lock = threading.Lock()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now (never the same one twice per process).

    There is an unavoidable window between this check and the server's bind;
    the servers below retry with a new port if the bind fails.
    """
    with _port_lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
            if port not in _issued_ports:
                _issued_ports.add(port)
                return port
    raise RuntimeError("could not find a free TCP port")


# --------------------------------------------------------------------------- TLS

_cert_lock = threading.Lock()
_cert_cache: tuple[Path, Path] | None = None


def self_signed_cert() -> tuple[Path, Path]:
    """(certfile, keyfile) of a throw-away self-signed certificate, made once per process.

    Subject ``CN=localhost`` with SANs ``DNS:localhost`` and ``IP:127.0.0.1``,
    so a client context that trusts ``certfile`` can verify host names too.
    """
    global _cert_cache
    with _cert_lock:
        if _cert_cache is not None and _cert_cache[0].exists():
            return _cert_cache
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("openssl is not installed; cannot make a test certificate")
        directory = Path(tempfile.mkdtemp(prefix="deskhand-tls-"))
        atexit.register(shutil.rmtree, directory, True)
        cert, key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", str(key), "-out", str(cert),
            ],
            check=True,
            capture_output=True,
        )
        # Dovecot's unprivileged processes never read the key (the config
        # process does, as root), but keep it readable for a non-root run.
        directory.chmod(0o755)
        cert.chmod(0o644)
        key.chmod(0o644)
        _cert_cache = (cert, key)
        return _cert_cache


def client_ssl_context(certfile: Path | str | None = None) -> ssl.SSLContext:
    """A client context that trusts the test certificate (and verifies it)."""
    ctx = ssl.create_default_context(cafile=str(certfile or self_signed_cert()[0]))
    return ctx


def insecure_client_ssl_context() -> ssl.SSLContext:
    """A client context with verification disabled (what a lenient daemon config would do)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------- Dovecot

_DOVECOT_CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")


def dovecot_binary() -> str | None:
    """Path of the ``dovecot`` binary, or None (it lives in /usr/sbin, often not on PATH)."""
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in _DOVECOT_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@functools.lru_cache(maxsize=None)
def dovecot_version(binary: str | None = None) -> tuple[int, ...]:
    """Version of the installed Dovecot, e.g. (2, 3, 19, 1)."""
    binary = binary or dovecot_binary()
    if binary is None:
        raise RuntimeError("dovecot is not installed")
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"\s*(\d+(?:\.\d+)*)", out)
    if not match:
        raise RuntimeError(f"cannot parse `dovecot --version` output: {out!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_dovecot() -> str:
    """Return the dovecot binary, or skip the test (fail it when ``CI=true``)."""
    binary = dovecot_binary()
    if binary is not None:
        return binary
    reason = (
        "Dovecot is not installed (no `dovecot` on PATH or in /usr/sbin); "
        "`bash scripts/test` installs it with apt-get "
        "(packages dovecot-imapd dovecot-lmtpd)"
    )
    if _in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _doveadm_binary(dovecot: str) -> str:
    sibling = Path(dovecot).with_name("doveadm")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("doveadm")
    if found is None:
        raise RuntimeError("doveadm not found next to dovecot")
    return found


_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")


class Dovecot:
    """A private Dovecot IMAP server with one passwd-file user and Maildir storage.

    Plaintext IMAP on ``host:port`` by default; ``tls=True`` gives an
    implicit-TLS (IMAPS, port-993 style) listener instead, with a self-signed
    certificate (``certfile``; clients: ``client_ssl_context()``).

    Processes run as root when the tests do (mail files belong to the ``mail``
    system user, Dovecot refuses root for mail access), otherwise everything runs
    as the current user. ``start()`` takes ~0.05 s, ``stop()`` ~1 s (Dovecot's
    own shutdown), ``close()`` is a SIGKILL of the process group plus removal of
    the directory.
    """

    def __init__(
        self,
        *,
        username: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        tls: bool = False,
        host: str = LOOPBACK,
        port: int | None = None,
        binary: str | None = None,
    ) -> None:
        self.binary = binary or dovecot_binary()
        if self.binary is None:
            raise RuntimeError("dovecot is not installed")
        self.version = dovecot_version(self.binary)
        self.username = username
        self.password = password
        self.tls = tls
        self.host = host
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(host)
        self.certfile: Path | None = None
        self.keyfile: Path | None = None
        if tls:
            self.certfile, self.keyfile = self_signed_cert()
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self.root = self._make_root()
        self.home = self.root / "mail" / "user"
        self.maildir = self.home / "Maildir"
        self.config_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self._prepare_tree()
        _register(self)

    # -- layout --------------------------------------------------------------

    @staticmethod
    def _make_root() -> Path:
        # Unix socket paths are limited to 107 bytes; base_dir lives in here.
        parent = None
        if len(tempfile.gettempdir()) > 40:
            parent = "/tmp"
        root = Path(tempfile.mkdtemp(prefix="dovecot-", dir=parent))
        # Login processes run as dovenull and must be able to traverse base_dir.
        root.chmod(0o755)
        return root

    def _accounts(self) -> dict[str, object]:
        if os.geteuid() == 0:
            try:
                mail = pwd.getpwnam("mail")
            except KeyError:
                mail = pwd.getpwnam("nobody")
            return {
                "root": True,
                "mail_uid": mail.pw_uid,
                "mail_gid": mail.pw_gid,
            }
        me = pwd.getpwuid(os.getuid())
        return {
            "root": False,
            "mail_uid": os.getuid(),
            "mail_gid": os.getgid(),
            "user": me.pw_name,
            "group": grp.getgrgid(os.getgid()).gr_name,
        }

    def _prepare_tree(self) -> None:
        acct = self._accounts()
        for sub in ("run", "state"):
            (self.root / sub).mkdir()
        (self.root / "mail").mkdir(mode=0o755)
        self.home.mkdir(mode=0o700)
        os.chown(self.home, acct["mail_uid"], acct["mail_gid"])
        passwd = self.root / "passwd"
        # user:password:uid:gid:gecos:home:shell:extra (uid/gid come from mail_uid/mail_gid)
        passwd.write_text(f"{self.username}:{{PLAIN}}{self.password}::::{self.home}::\n")
        passwd.chmod(0o644)
        self.config_path.write_text(self._config(acct, passwd))

    def _config(self, acct: dict, passwd: Path) -> str:
        v24 = self.version >= (2, 4)
        lines: list[str] = []
        add = lines.append
        if v24:
            # 2.4 renamed many settings; this variant has not been exercised here
            # (Debian 12 ships 2.3.19); config errors surface in start()'s exception.
            add("dovecot_config_version = 2.4.0")
            add("dovecot_storage_version = 2.4.0")
        add("protocols = imap")
        add(f"listen = {self.host}")
        add(f"base_dir = {self.root / 'run'}")
        add(f"state_dir = {self.root / 'state'}")
        add(f"instance_name = {self.root.name}")
        add(f"log_path = {self.log_path}")
        add("auth_mechanisms = plain login")
        # Failed logins answer in <= 0.5 s (default: 2 s per failure).
        add("auth_failure_delay = 0")
        add("first_valid_uid = 1")
        add("first_valid_gid = 1")
        add(f"mail_uid = {acct['mail_uid']}")
        add(f"mail_gid = {acct['mail_gid']}")
        # No fsync per message: test data is throw-away.
        add("mail_fsync = never")
        if v24:
            add("auth_allow_cleartext = yes")
            add("mail_driver = maildir")
            add("mail_path = ~/Maildir")
            add("passdb passwd-file {")
            add(f"  passwd_file_path = {passwd}")
            add("}")
            add("userdb passwd-file {")
            add(f"  passwd_file_path = {passwd}")
            add("}")
        else:
            add("disable_plaintext_auth = no")
            add("mail_location = maildir:~/Maildir")
            add("passdb {")
            add("  driver = passwd-file")
            add(f"  args = scheme=PLAIN {passwd}")
            add("}")
            add("userdb {")
            add("  driver = passwd-file")
            add(f"  args = {passwd}")
            add("}")
        if self.tls:
            add("ssl = required")
            if v24:
                add(f"ssl_server_cert_file = {self.certfile}")
                add(f"ssl_server_key_file = {self.keyfile}")
            else:
                add(f"ssl_cert = <{self.certfile}")
                add(f"ssl_key = <{self.keyfile}")
        else:
            add("ssl = no")
        if not acct["root"]:
            # Rootless: every internal/login process runs as us, no chroots.
            add(f"default_internal_user = {acct['user']}")
            add(f"default_internal_group = {acct['group']}")
            add(f"default_login_user = {acct['user']}")
        add("service imap-login {")
        if not acct["root"]:
            add("  chroot =")
        add("  inet_listener imap {")
        add(f"    port = {0 if self.tls else self.port}")
        add("  }")
        add("  inet_listener imaps {")
        add(f"    port = {self.port if self.tls else 0}")
        add("  }")
        add("}")
        if not acct["root"] or not v24:
            add("service anvil {")
            if not acct["root"]:
                add("  chroot =")
            if not v24:
                # No growing per-IP penalty after repeated failed logins.
                add("  unix_listener anvil-auth-penalty {")
                add("    mode = 0")
                add("  }")
            add("}")
        return "\n".join(lines) + "\n"

    # -- process control ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> "Dovecot":
        """Start the server and wait until it sends its IMAP greeting."""
        if self.running:
            return self
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait(timeout)
                return self
            except _PortInUse:
                if attempt + 1 == attempts:
                    raise RuntimeError(f"port {self.port} is in use") from None
                self.port = free_port(self.host)
                self.config_path.write_text(
                    self._config(self._accounts(), self.root / "passwd")
                )
        return self  # pragma: no cover

    def _spawn_and_wait(self, timeout: float) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._stderr = open(self.root / "dovecot.stderr", "ab")
        self._proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop()/close() signal all of it
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                out = self._diagnostics(log_offset)
                self._reap()
                if "Address already in use" in out:
                    raise _PortInUse()
                raise RuntimeError(f"dovecot exited during start-up:\n{out}")
            if self._greeting_ok():
                return
            if time.monotonic() > deadline:
                out = self._diagnostics(log_offset)
                self.kill()
                raise RuntimeError(f"dovecot not ready after {timeout}s:\n{out}")
            time.sleep(0.02)

    def _greeting_ok(self) -> bool:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2)
        except OSError:
            return False
        try:
            if self.tls:
                sock = insecure_client_ssl_context().wrap_socket(sock)
            return sock.recv(256).startswith(b"* OK")
        except OSError:
            return False
        finally:
            sock.close()

    def _diagnostics(self, log_offset: int = 0) -> str:
        parts = []
        stderr = self.root / "dovecot.stderr"
        if stderr.exists():
            parts.append(stderr.read_text(errors="replace")[-4000:])
        if self.log_path.exists():
            with open(self.log_path, "rb") as fh:
                fh.seek(log_offset)
                parts.append(fh.read().decode(errors="replace")[-4000:])
        return "\n".join(p for p in parts if p.strip())

    def _signal_group(self, sig: int) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self) -> None:
        if self._proc is not None:
            # Leftover children (if any) go with the group.
            self._signal_group(signal.SIGKILL)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM, Dovecot needs ~1 s); SIGKILL after ``timeout``."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._reap()

    def kill(self) -> None:
        """Immediate stop: SIGKILL to the whole process group (data already on disk stays)."""
        self._reap()

    def restart(self, *, graceful: bool = True) -> "Dovecot":
        """Stop and start again: same directory, same data, same port.

        ``graceful=False`` SIGKILLs instead (a crash; faster than Dovecot's ~1 s shutdown).
        """
        if graceful:
            self.stop()
        else:
            self.kill()
        self._fixed_port = True
        return self.start()

    def close(self) -> None:
        """Kill the server and delete its directory. The object is unusable afterwards."""
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
        _unregister(self)

    def __enter__(self) -> "Dovecot":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Dovecot {self.host}:{self.port} tls={self.tls} {state} {self.root}>"

    def log(self) -> str:
        """Dovecot's log so far (useful in assertion messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- client-side helpers (real IMAP through imapclient) ---------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        """Client context trusting this server's certificate (None for plaintext)."""
        return client_ssl_context(self.certfile) if self.tls else None

    def connect(self, *, login: bool = True, timeout: float = 10.0):
        """A new ``imapclient.IMAPClient`` to this server (logged in by default).

        Use it as a context manager, or call ``logout()`` yourself.
        """
        from imapclient import IMAPClient

        client = IMAPClient(
            self.host,
            port=self.port,
            ssl=self.tls,
            ssl_context=self.ssl_context(),
            timeout=timeout,
        )
        if login:
            client.login(self.username, self.password)
        return client

    def append(
        self,
        raw: bytes | str,
        mailbox: str = "INBOX",
        flags: Iterable[bytes | str] = (),
        msg_time=None,
    ) -> int:
        """APPEND a raw RFC 5322 message; returns its UID (from UIDPLUS APPENDUID)."""
        if isinstance(raw, str):
            raw = raw.encode()
        with self.connect() as client:
            response = client.append(mailbox, raw, flags=tuple(flags), msg_time=msg_time)
        match = _APPENDUID.search(response)
        if not match:
            raise RuntimeError(f"no APPENDUID in APPEND response: {response!r}")
        return int(match.group(2))

    def create_mailbox(self, name: str) -> None:
        with self.connect() as client:
            client.create_folder(name)

    def uids(self, mailbox: str = "INBOX") -> list[int]:
        with self.connect() as client:
            client.select_folder(mailbox, readonly=True)
            return sorted(client.search("ALL"))

    def fetch_flags(self, mailbox: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        """{uid: flags} for every message in ``mailbox`` (read-only, nothing changes)."""
        with self.connect() as client:
            client.select_folder(mailbox, readonly=True)
            uids = client.search("ALL")
            if not uids:
                return {}
            return {uid: tuple(data[b"FLAGS"]) for uid, data in client.fetch(uids, ["FLAGS"]).items()}

    def flags(self, uid: int, mailbox: str = "INBOX") -> tuple[bytes, ...]:
        """Flags of one message; KeyError if the UID does not exist."""
        with self.connect() as client:
            client.select_folder(mailbox, readonly=True)
            data = client.fetch([uid], ["FLAGS"])
        return tuple(data[uid][b"FLAGS"])

    def set_flags(self, uid: int, flags: Iterable[bytes | str], mailbox: str = "INBOX") -> None:
        """Replace the flags of one message."""
        with self.connect() as client:
            client.select_folder(mailbox)
            client.set_flags([uid], list(flags), silent=True)

    def fetch_raw(self, uid: int, mailbox: str = "INBOX") -> bytes:
        """The message as stored (BODY.PEEK[], so \\Seen is not set)."""
        with self.connect() as client:
            client.select_folder(mailbox, readonly=True)
            data = client.fetch([uid], ["BODY.PEEK[]"])
        return data[uid][b"BODY[]"]

    def message_count(self, mailbox: str = "INBOX") -> int:
        with self.connect() as client:
            return client.folder_status(mailbox, [b"MESSAGES"])[b"MESSAGES"]

    def uidvalidity(self, mailbox: str = "INBOX") -> int:
        with self.connect() as client:
            return client.folder_status(mailbox, [b"UIDVALIDITY"])[b"UIDVALIDITY"]

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm -c <our config> ...`` (works with the server up or down)."""
        result = subprocess.run(
            [_doveadm_binary(self.binary), "-c", str(self.config_path), *args],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def set_uidvalidity(self, value: int | None = None, mailbox: str = "INBOX") -> int:
        """Give ``mailbox`` a new UIDVALIDITY (default: current + 1); returns it.

        Done live with ``doveadm mailbox update``. Messages keep their UID
        numbers (meaningless now to a client that remembered the old
        UIDVALIDITY). Sessions that have the mailbox selected are disconnected
        by Dovecot ("IMAP session state is inconsistent").
        """
        if value is None:
            value = self.uidvalidity(mailbox) + 1
        self.doveadm("mailbox", "update", "-u", self.username, "--uid-validity", str(value), mailbox)
        return value

    def _mailbox_dir(self, mailbox: str) -> Path:
        # Maildir++ layout: INBOX is the root, "Archive.2024" is ".Archive.2024"
        # (the IMAP hierarchy separator is ".").
        if mailbox.upper() == "INBOX":
            return self.maildir
        return self.maildir / f".{mailbox}"

    def renumber_uids(
        self,
        mailbox: str = "INBOX",
        *,
        uidvalidity: int | None = None,
        first_uid: int | None = None,
    ) -> dict[int, int]:
        """Simulate a rebuilt mailbox: new UIDVALIDITY *and* new UIDs for every message.

        Stops the server, rewrites ``dovecot-uidlist`` (new UIDVALIDITY,
        default old + 1; UIDs from ``first_uid``, default the old UIDNEXT, in the
        old order), drops the index files and starts again on the same port.
        Message contents and flags are untouched. Returns {old_uid: new_uid}.
        """
        folder = self._mailbox_dir(mailbox)
        uidlist = folder / "dovecot-uidlist"
        was_running = self.running
        self.stop()
        try:
            header, *entries = uidlist.read_text().splitlines()
            fields = header.split()
            if fields[0] != "3":
                raise RuntimeError(f"unsupported dovecot-uidlist version: {header!r}")
            values = {f[0]: f[1:] for f in fields[1:]}
            old_validity, old_next = int(values["V"]), int(values.get("N", "1"))
            validity = old_validity + 1 if uidvalidity is None else uidvalidity
            rows = [line.split(" ", 1) for line in entries if line.strip()]
            # The header's N is written lazily and may lag behind the entries.
            old_next = max([old_next, *(int(old_uid) + 1 for old_uid, _ in rows)])
            uid = old_next if first_uid is None else first_uid
            mapping: dict[int, int] = {}
            out = []
            for old_uid, rest in rows:
                mapping[int(old_uid)] = uid
                out.append(f"{uid} {rest}")
                uid += 1
            values["V"], values["N"] = str(validity), str(uid)
            new_header = " ".join(["3"] + [k + v for k, v in values.items()])
            stat = uidlist.stat()
            uidlist.write_text("\n".join([new_header, *out]) + "\n")
            os.chown(uidlist, stat.st_uid, stat.st_gid)
            # Indexes (per mailbox and the mailbox-list one) cache UIDs and
            # UIDVALIDITY; Dovecot rebuilds them from the uidlist.
            for index in [*folder.glob("dovecot.index*"), *self.maildir.glob("dovecot.list.index*")]:
                index.unlink()
        finally:
            if was_running:
                self.start()
        return mapping


class _PortInUse(Exception):
    pass


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class CapturedMessage:
    """One message accepted by ``SmtpCapture``."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # the DATA payload as received (dot-unstuffed, CRLF line ends)
    peer: tuple
    tls: bool  # the transaction ran over TLS (STARTTLS or implicit)
    auth_login: str | None  # AUTH user name, if the client authenticated
    received_at: float = field(compare=False)

    def message(self) -> email.message.EmailMessage:
        """The parsed message (``email.policy.default``)."""
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class _Failure:
    code: int
    text: str
    stage: str


_DEFAULT_TEXT = {
    4: "4.3.0 Temporary failure, try again later (forced by test)",
    5: "5.7.1 Message rejected (forced by test)",
}


class _CaptureHandler:
    def __init__(self, capture: "SmtpCapture") -> None:
        self.capture = capture

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        failure = self.capture._claim_failure()
        envelope.deskhand_failure = failure
        if failure and failure.stage == "mail":
            return self.capture._reject(failure, address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        failure = getattr(envelope, "deskhand_failure", None)
        if failure and failure.stage == "rcpt":
            return self.capture._reject(failure, envelope.mail_from, address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        failure = getattr(envelope, "deskhand_failure", None)
        if failure and failure.stage == "data":
            return self.capture._reject(failure, envelope.mail_from)
        content = envelope.content
        if isinstance(content, str):  # only with decode_data=True, which we do not use
            content = content.encode("utf-8", "surrogateescape")
        login = getattr(session.auth_data, "login", None) if session.authenticated else None
        if isinstance(login, bytes):
            login = login.decode("utf-8", "replace")
        # session.ssl is only set by STARTTLS; implicit TLS shows on the transport.
        tls = session.ssl is not None or (
            server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None
        )
        self.capture._record(
            CapturedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(content),
                peer=tuple(session.peer) if session.peer else (),
                tls=tls,
                auth_login=login,
                received_at=time.time(),
            )
        )
        return "250 2.0.0 OK: queued"


class SmtpCapture:
    """aiosmtpd server on 127.0.0.1 that keeps every accepted message in ``messages``.

    * ``starttls=True``: offers STARTTLS with a self-signed cert and (by default)
      refuses MAIL before it, like a submission server.
    * ``implicit_tls=True``: TLS from the first byte (port-465 style).
    * ``credentials=(user, password)``: advertises AUTH PLAIN/LOGIN (also over
      plaintext, for tests) and accepts only that pair; the login is recorded in
      ``CapturedMessage.auth_login``. Authentication is offered, not required.
    * ``fail_next(451)`` / ``fail_next(550, count=2, stage="rcpt")``: refuse the
      next transactions with that reply.
    """

    STAGES = ("mail", "rcpt", "data")

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int | None = None,
        starttls: bool = False,
        require_starttls: bool | None = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        server_hostname: str = "smtp.deskhand.test",
    ) -> None:
        if starttls and implicit_tls:
            raise ValueError("choose starttls or implicit_tls, not both")
        self.host = host
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(host)
        self.starttls = starttls
        self.require_starttls = starttls if require_starttls is None else require_starttls
        self.implicit_tls = implicit_tls
        self.credentials = credentials
        self.server_hostname = server_hostname
        self.certfile: Path | None = None
        self.keyfile: Path | None = None
        if starttls or implicit_tls:
            self.certfile, self.keyfile = self_signed_cert()
        self._controller = None
        self._cond = threading.Condition()
        self._messages: list[CapturedMessage] = []
        self._rejections: list[tuple[int, str, str, str | None]] = []
        self._failures: list[_Failure] = []
        _register(self)

    # -- lifecycle --------------------------------------------------------------

    def _server_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.certfile), str(self.keyfile))
        return ctx

    def _build_controller(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        kwargs: dict = {
            "hostname": self.host,
            "port": self.port,
            "server_hostname": self.server_hostname,
            "ident": "Deskhand test SMTP capture",
            "enable_SMTPUTF8": True,
        }
        if self.starttls:
            kwargs["tls_context"] = self._server_ssl_context()
            kwargs["require_starttls"] = self.require_starttls
        if self.implicit_tls:
            kwargs["ssl_context"] = self._server_ssl_context()
        if self.credentials is not None:
            user, password = self.credentials

            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = (
                    getattr(auth_data, "login", None) == user.encode()
                    and getattr(auth_data, "password", None) == password.encode()
                )
                return AuthResult(success=ok, handled=False, auth_data=auth_data)

            kwargs["authenticator"] = authenticator
            kwargs["auth_require_tls"] = False
        return Controller(_CaptureHandler(self), **kwargs)

    def start(self) -> "SmtpCapture":
        if self._controller is not None:
            return self
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            controller = self._build_controller()
            try:
                controller.start()
            except OSError:
                try:
                    controller.stop()
                except Exception:
                    pass
                if attempt + 1 == attempts:
                    raise
                self.port = free_port(self.host)
                continue
            self._controller = controller
            return self
        return self  # pragma: no cover

    def stop(self) -> None:
        if self._controller is not None:
            controller, self._controller = self._controller, None
            controller.stop()

    def close(self) -> None:
        self.stop()
        _unregister(self)

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> "SmtpCapture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "implicit-tls" if self.implicit_tls else "starttls" if self.starttls else "plain"
        return f"<SmtpCapture {self.host}:{self.port} {mode} messages={len(self._messages)}>"

    # -- client side -------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        """Client context trusting this server's certificate (None without TLS)."""
        return client_ssl_context(self.certfile) if self.certfile else None

    # -- captured data -----------------------------------------------------------

    @property
    def messages(self) -> list[CapturedMessage]:
        """Snapshot of the accepted messages, oldest first."""
        with self._cond:
            return list(self._messages)

    @property
    def rejections(self) -> list[tuple[int, str, str, str | None]]:
        """Forced refusals so far: (code, stage, mail_from, rcpt or None)."""
        with self._cond:
            return list(self._rejections)

    def wait_for(self, n: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        """Block until at least ``n`` messages were accepted; returns the snapshot.

        Raises ``TimeoutError`` (with what did arrive) otherwise.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= n, timeout=timeout):
                raise TimeoutError(
                    f"expected {n} message(s) within {timeout}s, got {len(self._messages)}; "
                    f"forced refusals: {self._rejections}"
                )
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()
            self._rejections.clear()

    def fail_next(
        self,
        code: int = 451,
        text: str | None = None,
        *,
        count: int = 1,
        stage: str = "data",
    ) -> None:
        """Refuse the next ``count`` transactions with ``code`` (e.g. 451, 550).

        A transaction claims a queued refusal at MAIL FROM and is refused at
        ``stage``: "mail" (MAIL FROM), "rcpt" (every RCPT TO of that
        transaction) or "data" (after the message body, the default).
        aiosmtplib raises SMTPSenderRefused / SMTPRecipientsRefused /
        SMTPDataError respectively, each carrying ``code``.
        """
        if stage not in self.STAGES:
            raise ValueError(f"stage must be one of {self.STAGES}")
        if not 400 <= code <= 599:
            raise ValueError("code must be a 4xx or 5xx SMTP reply code")
        if text is None:
            text = _DEFAULT_TEXT[code // 100]
        with self._cond:
            self._failures.extend(_Failure(code, text, stage) for _ in range(count))

    # -- called from the server thread ------------------------------------------------

    def _claim_failure(self) -> _Failure | None:
        with self._cond:
            return self._failures.pop(0) if self._failures else None

    def _reject(self, failure: _Failure, mail_from: str, rcpt: str | None = None) -> str:
        with self._cond:
            self._rejections.append((failure.code, failure.stage, mail_from, rcpt))
        return f"{failure.code} {failure.text}"

    def _record(self, message: CapturedMessage) -> None:
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()
