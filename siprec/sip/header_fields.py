"""Header fields of a SIP message: an ordered, case-insensitive multi-map.

Names are canonicalised (compact forms expanded, RFC 3261 §7.3.3); values
are kept as received except for control characters, which could break the
framing of a message they are copied to.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, List, Optional, Tuple

from siprec.sip.headers import split_commas

__all__ = ["Headers", "COMPACT_FORMS", "canonical_name"]

_CTL_IN_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB is allowed in values


def _clean_value(value: str) -> str:
    """A header value cannot carry CR/LF or other control characters onto the wire."""
    if _CTL_IN_VALUE_RE.search(value):
        return _CTL_IN_VALUE_RE.sub(" ", value)
    return value


COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_SPECIAL_CASE = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "min-se": "Min-SE",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "session-id": "Session-ID",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
    "user-to-user": "User-to-User",
}

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1).
_LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "Allow-Events",
    )
)

_CANONICAL_CACHE: dict = {}
_CANONICAL_CACHE_MAX = 1024  # names from the wire are unbounded; the cache is not


def canonical_name(name: str) -> str:
    """Canonical spelling of a header name (compact forms expanded)."""
    cached = _CANONICAL_CACHE.get(name)
    if cached is not None:
        return cached
    lower = name.strip().lower()
    if lower in COMPACT_FORMS:
        result = COMPACT_FORMS[lower]
    elif lower in _SPECIAL_CASE:
        result = _SPECIAL_CASE[lower]
    else:
        result = "-".join(part.capitalize() for part in lower.split("-"))
    if len(_CANONICAL_CACHE) < _CANONICAL_CACHE_MAX:
        _CANONICAL_CACHE[name] = result
    return result


class Headers:
    """An ordered, case-insensitive multi-map of header fields.

    Names are stored canonically (compact forms expanded); values are
    kept as received, except that control characters are replaced by
    spaces so no value can break the framing of a message it is copied to.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Tuple[str, str]] = ()):
        self._items: List[Tuple[str, str]] = [
            (canonical_name(n), _clean_value(str(v))) for n, v in items
        ]

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        key = canonical_name(name)
        return any(n == key for n, _ in self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> "Headers":
        new = Headers()
        new._items = list(self._items)
        return new

    def count(self, name: str) -> int:
        """How many fields (lines) named ``name`` there are."""
        key = canonical_name(name)
        return sum(1 for n, _ in self._items if n == key)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        key = canonical_name(name)
        for n, v in self._items:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> List[str]:
        """Every value of ``name``; list-valued headers split on commas."""
        key = canonical_name(name)
        values = [v for n, v in self._items if n == key]
        if key.lower() in _LIST_HEADERS:
            out: List[str] = []
            for v in values:
                out.extend(split_commas(v))
            return out
        return values

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), _clean_value(str(value))))

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field with one, at the first one's place."""
        key = canonical_name(name)
        value = _clean_value(str(value))
        for i, (n, _) in enumerate(self._items):
            if n == key:
                self._items = (
                    self._items[:i]
                    + [(key, value)]
                    + [item for item in self._items[i + 1 :] if item[0] != key]
                )
                return
        self._items.append((key, value))

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first value of a list header (the top Via), in place.

        Other values sharing its line, and every other field, keep their
        place; appends when there is no such header.
        """
        key = canonical_name(name)
        value = _clean_value(str(value))
        for i, (n, v) in enumerate(self._items):
            if n != key:
                continue
            parts = split_commas(v) if key.lower() in _LIST_HEADERS else [v]
            if not parts:
                continue  # an empty field holds no value; the first is further on
            self._items[i] = (key, ", ".join([value] + parts[1:]))
            return
        self._items.append((key, value))

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [(n, v) for n, v in self._items if n != key]

    def names(self) -> List[str]:
        return [n for n, _ in self._items]
