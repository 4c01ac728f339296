"""Slowing key guessing: failed key checks per client address and per key prefix, each past a few a doubling wait."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 5  # failed checks an address makes before it must wait
PREFIX_FREE_FAILURES = 20  # failed checks, from any addresses, around one key start before they must wait
FIRST_WAIT = 1.0  # seconds after the first failure past the free ones; doubled by each further one
MAX_WAIT = 300.0
FORGET_AFTER = 900.0  # seconds after its last failure that a record is dropped
MAX_RECORDS = 10_000  # per table (addresses, prefixes): the least recently failed goes first past it
PREFIX_CHARS = 6  # keys guessed around one known start count together, from any address


@dataclass
class _Record:
    failures: int
    until: float  # no key check before this (monotonic seconds)
    last: float


def address_key(address: str) -> str:
    """What one client counts as: its IPv4 address, or its IPv6 /64 (one host can hold a whole /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


class _Table:
    """Failure records by name, bounded in count (least recently failed dropped first) and in time."""

    def __init__(self, clock: Callable[[], float], free: int) -> None:
        self.clock = clock
        self.free = free
        self.records: OrderedDict[str, _Record] = OrderedDict()

    def get(self, name: str) -> _Record | None:
        record = self.records.get(name)
        if record is not None and self.clock() - record.last > FORGET_AFTER:
            del self.records[name]
            return None
        return record

    def fail(self, name: str) -> None:
        now = self.clock()
        record = self.get(name) or _Record(0, 0.0, now)
        record.failures += 1
        record.last = now
        past = record.failures - self.free + 1  # the free-th failure starts the first wait
        if past > 0:
            record.until = now + min(FIRST_WAIT * 2 ** min(past - 1, 32), MAX_WAIT)
        self.records[name] = record
        self.records.move_to_end(name)
        while len(self.records) > MAX_RECORDS:
            self.records.popitem(last=False)


class Guesses:
    """Owns the failure records of API keys (Authorization, x-api-key) and dashboard log-ins, and their counts."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.addresses = _Table(clock, FREE_FAILURES)
        self.prefixes = _Table(clock, PREFIX_FREE_FAILURES)
        self.failures = 0  # failed key checks
        self.refused = 0  # checks refused (429) without looking at the key

    def wait(self, address: str, key: str) -> float:
        """Seconds this caller must wait before its key is checked; 0 to check it now.

        A blocked address waits whatever key it sends. A blocked key prefix makes only addresses that
        have failed before wait: the right key keeps working from every other client.
        """
        now = self.clock()
        by_address = self.addresses.get(address_key(address))
        if by_address is not None and by_address.until > now:
            self.refused += 1
            return by_address.until - now
        by_prefix = self.prefixes.get(key[:PREFIX_CHARS])
        if by_address is not None and by_prefix is not None and by_prefix.until > now:
            self.refused += 1
            return by_prefix.until - now
        return 0.0

    def failed(self, address: str, key: str) -> None:
        """Count one failed key check of this address and key prefix."""
        self.failures += 1
        self.addresses.fail(address_key(address))
        self.prefixes.fail(key[:PREFIX_CHARS])

    def tracked(self) -> int:
        """Records held (both tables): what the limiter costs in memory."""
        return len(self.addresses.records) + len(self.prefixes.records)
