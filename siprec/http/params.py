"""Query parameters of the API, parsed strictly and capped.

Pure functions over ``request.args``-shaped mappings (bytes keys, lists of
bytes values), raising ApiError(400) with a message naming the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from siprec.http.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 1_000_000
MAX_DIGITS = 9  # enough for MAX_OFFSET; stops int() on huge digit strings


@dataclass(frozen=True, slots=True)
class Page:
    """A window over a list: `limit` items starting at `offset`."""

    limit: int
    offset: int

    def slice(self, items: Sequence) -> list:
        return list(items[self.offset:self.offset + self.limit])


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def int_param(args: Mapping[bytes, Sequence[bytes]], name: str, default: int,
              minimum: int, maximum: int, clamp: bool = False) -> int:
    """One non-negative decimal integer parameter, given at most once."""
    values = args.get(name.encode("ascii"))
    if not values:
        return default
    if len(values) > 1:
        raise _bad(f"parameter '{name}' given more than once")
    raw = values[0]
    if not raw or len(raw) > MAX_DIGITS or not raw.isdigit() or not raw.isascii():
        raise _bad(f"parameter '{name}' must be an integer from {minimum} to {maximum}")
    value = int(raw)
    if value < minimum:
        raise _bad(f"parameter '{name}' must be an integer from {minimum} to {maximum}")
    if value > maximum:
        if clamp:
            return maximum
        raise _bad(f"parameter '{name}' must be an integer from {minimum} to {maximum}")
    return value


def page_params(args: Mapping[bytes, Sequence[bytes]]) -> Page:
    """`limit` (0..MAX_LIMIT, larger values are capped) and `offset` (0..MAX_OFFSET)."""
    limit = int_param(args, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT, clamp=True)
    offset = int_param(args, "offset", 0, 0, MAX_OFFSET)
    return Page(limit=limit, offset=offset)
