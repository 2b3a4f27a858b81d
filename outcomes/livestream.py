"""The live stream's server side (under the ASGI server, ``./entrypoint.sh live``): one reader
of the Redis stream per process, its events fanned out to every connected client's bounded
queue; a client gets what its filters select (``outcomes.live.view``).

A client that reconnects with ``Last-Event-ID`` is sent the events after that id from the
stream itself (kept ``LIVE_STREAM_LENGTH`` entries), then the live ones, each once; one whose
id is older than the stream keeps, or whose queue filled up (a slow reader), gets a
``resync`` event: it refetches its figures from the reports, which are exact, instead of
counting what it missed.
"""

from __future__ import annotations

import asyncio
import logging
import re

import orjson
import redis.asyncio as aioredis
from django.conf import settings

from outcomes import live

logger = logging.getLogger(__name__)
BLOCK_MS = 5000


_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")


def valid_id(entry_id: str) -> bool:
    return bool(_ID.fullmatch(entry_id))


def _order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class Client:
    def __init__(self, filters: dict[str, str]) -> None:
        self.filters = filters
        self.key = tuple(sorted(filters.items()))  # clients with the same filters share each event's frame
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=settings.LIVE_CLIENT_QUEUE)
        self.lagging = False

    def offer(self, entry_id: str, data: bytes) -> None:
        if self.lagging:
            return
        try:
            self.queue.put_nowait((entry_id, data))
        except asyncio.QueueFull:
            self.lagging = True  # told once, then it refetches and reconnects


class Hub:
    """One per process: the stream's reader and the clients it feeds."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self._reader: asyncio.Task | None = None
        self._redis: aioredis.Redis | None = None

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(settings.LIVE_REDIS_URL, socket_timeout=BLOCK_MS / 1000 + 5)
        return self._redis

    def full(self) -> bool:
        return len(self.clients) >= settings.LIVE_MAX_CLIENTS

    def join(self, client: Client) -> None:
        self.clients.add(client)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read())

    def leave(self, client: Client) -> None:
        self.clients.discard(client)

    async def since(self, last_id: str) -> tuple[list[tuple[str, dict]], bool]:
        """The stream's entries after ``last_id`` and whether some were already trimmed."""
        first = await self.redis.xrange(settings.LIVE_STREAM, count=1)
        trimmed = bool(first) and _order(first[0][0].decode()) > _order(last_id)
        entries = await self.redis.xrange(settings.LIVE_STREAM, min=f"({last_id}")
        return [(i.decode(), orjson.loads(f[b"data"])) for i, f in entries], trimmed

    async def _read(self) -> None:
        last = "$"
        while self.clients:
            try:
                found = await self.redis.xread({settings.LIVE_STREAM: last}, block=BLOCK_MS, count=100)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: clients wait, the reader retries
                logger.warning("live stream unreadable; retrying", extra={"error": str(exc)})
                await asyncio.sleep(1)
                continue
            for _stream, entries in found or ():
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    event = orjson.loads(fields[b"data"])
                    frames: dict[tuple, bytes] = {}  # one view and one frame per set of filters, not per client
                    for client in list(self.clients):
                        data = frames.get(client.key)
                        if data is None:
                            data = frames[client.key] = frame(last, "batch", live.view(event, client.filters))
                        client.offer(last, data)


HUB = Hub()


def frame(entry_id: str | None, kind: str, data: dict) -> bytes:
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


async def stream(filters: dict[str, str], last_id: str | None):
    """The client's Server-Sent Events, until it leaves (or the server stops)."""
    client = Client(filters)
    HUB.join(client)  # before catching up: nothing published meanwhile is missed
    try:
        yield f"retry: {settings.LIVE_RETRY_MS}\n\n".encode()
        sent = None
        if last_id:
            try:
                missed, trimmed = await HUB.since(last_id)
            except Exception:  # noqa: BLE001 - cannot catch up: refetch
                missed, trimmed = [], True
            if trimmed:
                yield frame(None, "resync", {"reason": "the updates since your last one are no longer kept"})
            for entry_id, event in missed:
                yield frame(entry_id, "batch", live.view(event, filters))
                sent = entry_id
        while True:
            try:
                entry_id, data = await asyncio.wait_for(client.queue.get(), timeout=settings.LIVE_HEARTBEAT_S)
            except TimeoutError:
                if client.lagging:
                    yield frame(None, "resync", {"reason": "this connection fell behind"})
                    return
                yield b": keep-alive\n\n"
                continue
            if sent is not None and _order(entry_id) <= _order(sent):
                continue  # already sent while catching up
            yield data
            sent = entry_id
            if client.lagging and client.queue.empty():
                yield frame(None, "resync", {"reason": "this connection fell behind"})
                return
    finally:
        HUB.leave(client)
