"""Replaying dead letters after a fix: parse the stored bytes again and store what is valid now.

Uses the same parser and the same writer as the consumer, so a replayed outcome is stored
exactly as if it had arrived valid (and a bid id already stored is a duplicate, not a
second row). Touches only the database.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
from django.db import transaction
from django.utils import timezone

from outcomes.messages import InvalidOutcome, parse_outcome
from outcomes.models import AuctionOutcome, DeadLetter
from outcomes.writes import Batch, Position, write_batch


@dataclass
class ReplayReport:
    examined: int = 0
    stored: int = 0
    duplicates: int = 0
    conflicting: int = 0
    still_invalid: Counter = field(default_factory=Counter)


def dead_letters_replay(
    *,
    reasons: list[str] | None = None,
    ids: list[int] | None = None,
    dry_run: bool = False,
    max_bytes: int,
    max_price: Decimal,
    chunk_size: int = 1000,
) -> ReplayReport:
    queryset = DeadLetter.objects.filter(replayed_at__isnull=True).order_by("id")
    if reasons:
        queryset = queryset.filter(reason__in=reasons)
    if ids:
        queryset = queryset.filter(id__in=ids)
    report = ReplayReport()
    last_id = 0
    while True:
        chunk = list(queryset.filter(id__gt=last_id)[:chunk_size])
        if not chunk:
            return report
        last_id = chunk[-1].id
        _replay_chunk(chunk, report, dry_run=dry_run, max_bytes=max_bytes, max_price=max_price)


def _replay_chunk(
    chunk: list[DeadLetter], report: ReplayReport, *, dry_run: bool, max_bytes: int, max_price: Decimal
) -> None:
    batch = Batch()
    letters_by_bid: dict[str, list[DeadLetter]] = {}
    for letter in chunk:
        report.examined += 1
        value = bytes(letter.value) if letter.value is not None else None
        key = bytes(letter.key) if letter.key is not None else None
        parsed = parse_outcome(value, key, max_bytes=max_bytes, max_price=max_price)
        if isinstance(parsed, InvalidOutcome):
            report.still_invalid[parsed.reason] += 1
            continue
        batch.events.append((parsed, Position(letter.topic, letter.partition, letter.offset)))
        letters_by_bid.setdefault(parsed.bid_id, []).append(letter)
    if not batch.events:
        return
    if dry_run:
        existing = set(AuctionOutcome.objects.filter(bid_id__in=list(letters_by_bid)).values_list("bid_id", flat=True))
        report.stored += sum(1 for bid in letters_by_bid if bid not in existing)
        report.duplicates += sum(len(v) for bid, v in letters_by_bid.items() if bid in existing)
        return
    with transaction.atomic():
        # The writer dead-letters a conflicting copy at the same position, which is this very
        # row (unique by position), so it is left untouched and stays un-replayed.
        result = write_batch(batch, consumer_group="replay")
        conflicting = result.dead_lettered.get("conflicting_duplicate", 0)
        report.stored += result.stored
        report.duplicates += result.duplicates
        report.conflicting += conflicting
        if conflicting:
            conflicted = _conflicted_bids(batch)
            done = [letter.id for bid, letters in letters_by_bid.items() if bid not in conflicted for letter in letters]
        else:
            done = [letter.id for letters in letters_by_bid.values() for letter in letters]
        DeadLetter.objects.filter(id__in=done).update(replayed_at=timezone.now())


def _conflicted_bids(batch: Batch) -> set[str]:
    bids = [event.bid_id for event, _ in batch.events]
    stored = dict(AuctionOutcome.objects.filter(bid_id__in=bids).values_list("bid_id", "raw_data"))
    return {event.bid_id for event, _ in batch.events if stored.get(event.bid_id) != orjson.loads(event.raw_json)}
