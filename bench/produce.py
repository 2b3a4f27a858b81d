#!/usr/bin/env python
"""A steady producer of realistic auction outcomes for benchmarks: ``--rate`` messages/s.

The messages (``outcomes.simulation``) are built before sending starts and sent with
librdkafka (confluent-kafka), so the producer, which stands in for the auction servers and
would not run beside the service, takes as little as possible of the CPU being measured
(kafka-python costs ~50 µs a message; librdkafka a few). Prints one line when sending
starts, then ``sent N`` at the end.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import orjson
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from outcomes.simulation import OutcomeSimulator  # noqa: E402


def send(producer: Producer, topic: str, **message) -> None:
    """``producer.produce()``, waiting while librdkafka's local queue is full."""
    while True:
        try:
            producer.produce(topic, **message)
            return
        except BufferError:
            producer.poll(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True, help="messages per second")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    messages = [
        (orjson.dumps(message), message["user_id"].encode())
        for message in OutcomeSimulator(seed=args.seed).stream(count=args.count)
    ]
    producer = Producer({"bootstrap.servers": args.brokers, "linger.ms": 20, "client.id": "bench-producer"})
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print(f"sending {len(messages)} outcomes at {args.rate:g}/s", flush=True)
    started, sent = time.monotonic(), 0
    for payload, key in messages:
        if stopping:
            break
        send(producer, args.topic, value=payload, key=key)
        sent += 1
        ahead = sent / args.rate - (time.monotonic() - started)
        if ahead > 0.005:
            producer.poll(0)
            time.sleep(ahead)
    producer.flush(30)
    print(f"sent {sent}", flush=True)


if __name__ == "__main__":
    main()
