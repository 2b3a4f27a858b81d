"""A local SMTP server that keeps every message as a file: `make run`'s mail when no
EMAIL_HOST is set, so scheduled reports and alerts can be read without a mail server.

    python scripts/mail_sink.py [--port 1025] [--dir .cache/mail]

Each message is written to DIR as <time>-<n>.eml (open it with any mail program, or read
it: it is text). aiosmtpd is the SMTP server of Python's own test suites.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{next(self.counter):04d}.eml"
        path = self.folder / name
        path.write_bytes(envelope.original_content or envelope.content)
        print(f"mail to {', '.join(envelope.rcpt_tos)} → {path}", flush=True)
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=Path(".cache/mail"))
    options = parser.parse_args()
    options.dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(Keep(options.dir), hostname=options.host, port=options.port)
    controller.start()
    print(f"SMTP sink on {options.host}:{options.port}, messages in {options.dir.resolve()}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
