"""Owners of provider-side stored objects, as both backends record them."""

from __future__ import annotations

from typing import NamedTuple


class Owner(NamedTuple):
    """Who made a stored object: a digest of the caller's key (`key`) and the memory scope (`user_id`)."""

    key: str
    user_id: str
