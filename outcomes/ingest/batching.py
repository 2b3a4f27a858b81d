"""The batch builder: messages in, a batch out when it is full or old enough (arroyo's
``Reduce``). Pure: no Kafka, no database, no clock of its own (``now`` is passed in).

It also remembers, per partition, the offset after the last message it was given
(``read_to``): where to seek back to without losing what is held, until the partition is
dropped (revoked, or every position re-read after a fenced write).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from outcomes.writes import Batch, Position, Rejected

Partition = Hashable  # (topic, partition) or a kafka TopicPartition: anything with .topic/.partition


class BatchBuilder:
    def __init__(self, *, max_size: int, max_time_s: float) -> None:
        self.max_size = max_size
        self.max_time_s = max_time_s
        self._batch = Batch()
        self._started = 0.0
        self.read_to: dict[Partition, int] = {}

    def __len__(self) -> int:
        return len(self._batch)

    def room(self) -> int:
        return max(0, self.max_size - len(self._batch))

    def add(self, partition: Partition, offset: int, item, now: float) -> None:
        """``item``: an (OutcomeEvent, Position) pair, or a Rejected message."""
        if not len(self._batch):
            self._started = now
        if isinstance(item, Rejected):
            self._batch.rejected.append(item)
        else:
            self._batch.events.append(item)
        self.read_to[partition] = offset + 1

    def due(self, now: float) -> bool:
        return bool(len(self._batch)) and (len(self._batch) >= self.max_size or now - self._started >= self.max_time_s)

    def wait_ms(self, now: float, idle_ms: int) -> int:
        """How long a poll may block before the batch is due (``idle_ms`` when empty)."""
        if not len(self._batch):
            return idle_ms
        return max(0, int((self._started + self.max_time_s - now) * 1000))

    def take(self) -> Batch:
        batch, self._batch = self._batch, Batch()
        return batch

    def drop(self, partitions: Iterable[Partition]) -> int:
        """Forget the held messages and positions of ``partitions``; how many messages went."""
        keys = {_key(p) for p in partitions}
        kept = Batch()
        dropped = 0
        for event, position in self._batch.events:
            if _key(position) in keys:
                dropped += 1
            else:
                kept.events.append((event, position))
        for rejected in self._batch.rejected:
            if _key(rejected.position) in keys:
                dropped += 1
            else:
                kept.rejected.append(rejected)
        self._batch = kept
        for partition in list(self.read_to):
            if _key(partition) in keys:
                del self.read_to[partition]
        return dropped


def next_offsets(batch: Batch) -> dict[tuple[str, int], int]:
    """Per (topic, partition): the offset after the batch's last message."""
    ends: dict[tuple[str, int], int] = {}
    for position in positions(batch):
        key = (position.topic, position.partition)
        ends[key] = max(ends.get(key, 0), position.offset + 1)
    return ends


def positions(batch: Batch) -> Iterable[Position]:
    for _event, position in batch.events:
        yield position
    for rejected in batch.rejected:
        yield rejected.position


def _key(partition) -> tuple[str, int]:
    return (partition.topic, partition.partition)
