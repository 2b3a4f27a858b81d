"""Real receivers for the deliveries' tests, on 127.0.0.1: an SMTP server (aiosmtpd) that
keeps the messages it accepted, and an HTTP server that keeps the webhooks it received; and
the worker as a real process (``manage.py procrastinate worker``)."""

from __future__ import annotations

import asyncio
import email
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from django.db import connection

from bench.harness import free_port

ROOT = Path(__file__).resolve().parent.parent


class SmtpSink:
    """An SMTP server that keeps each accepted message. ``hold()``: the next DATA waits until
    ``release(answer)`` (a worker can be killed mid-send); ``refuse(code)``: every message is
    refused with that answer."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self._held = False
        self._holding = threading.Event()
        self._release: asyncio.Event | None = None
        self._answer = "250 OK"
        self.refusal: str | None = None
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self._held:
            self._held = False
            self._release = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._holding.set()
            await self._release.wait()
            if not self._answer.startswith("250"):
                return self._answer
        if self.refusal:
            return self.refusal
        with self._lock:
            self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"

    def hold(self) -> None:
        self._held = True

    def wait_holding(self, timeout: float) -> bool:
        return self._holding.wait(timeout)

    def release(self, answer: str = "250 OK") -> None:
        self._answer = answer
        self._loop.call_soon_threadsafe(self._release.set)

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._release is not None and not self._release.is_set():
            self.release("421 closing")
        self.controller.stop()


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """An HTTP server keeping each POST; answers ``status`` (200 unless set)."""

    def __init__(self) -> None:
        self.received: list[Hook] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(Hook(self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/analytics"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class WorkerProcess:
    """The worker role as a real process against the test database (the image's entrypoint
    with ``entrypoint=True``)."""

    def __init__(self, log_path: Path, *, entrypoint: bool = False, env: dict[str, str] | None = None) -> None:
        db = connection.settings_dict
        environment = {
            **os.environ,
            "DEBUG": "true",
            "DB_NAME": db["NAME"],
            "DB_USER": db["USER"],
            "DB_PASSWORD": db["PASSWORD"],
            "DB_HOST": db["HOST"],
            "DB_PORT": str(db["PORT"]),
            "DB_CONN_MAX_AGE": "0",
            "REPORTING_CURRENCY": "",
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "DELIVERY_RETRY_SECONDS": "1",
            "WORKER_STALLED_AFTER_SECONDS": "3",
            "SCHEDULER_CRON": "* * * * * */2",
            "LOG_LEVEL": "INFO",
            "WORKER_HEALTH_FILE": str(log_path.with_suffix(".alive")),
            **(env or {}),
        }
        if entrypoint:
            command = ["./entrypoint.sh", "worker"]
            environment |= {"PYTHON": sys.executable, "RUN_MIGRATIONS": "false"}
        else:
            command = [sys.executable, "manage.py", "run_worker"]
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        finally:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
