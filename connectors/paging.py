"""Paginators: where the next page of a list starts, and when a list has ended.

One class per way vendors page (page number with a total, offset, keyset, next link, GraphQL
cursor). A paginator's `position` is plain JSON, so a read interrupted mid-list resumes from the
checkpoint that holds it. `advance` is the only way to move on, and it refuses to go back to a
position already read: a vendor that ignores a paging parameter would otherwise be read forever.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from connectors.errors import ApiError


class PagingLoop(ApiError):
    """The vendor answered a next-page request with a page already read."""


@dataclass(frozen=True)
class Reply:
    """One page as the vendor sent it: the raw items and what it said about the rest (`total`: how
    many items the whole list holds, where the vendor says so, as WooCommerce's `X-WP-Total`)."""

    items: Sequence[Any]
    total_pages: int | None = None
    next_link: str | None = None
    end_cursor: str | None = None
    has_next: bool | None = None
    total: int | None = None


class Paginator(ABC):
    """`size` is the page size asked for: a page shorter than that is the last one, for every
    vendor that gives no other sign."""

    first: Any = None

    def __init__(self, system: str, size: int, position: Any = None) -> None:
        self.system = system
        self.size = size
        self.position: Any = self.first if position is None else position
        self._read: set[str] = set()

    @abstractmethod
    def following(self, reply: Reply) -> Any:
        """The position of the next page, or None when `reply` was the last."""

    def expects_more(self, reply: Reply) -> bool:
        """Whether the vendor's own totals say a page follows (a short page is then suspect)."""
        return False

    def short(self, reply: Reply) -> bool:
        return len(reply.items) < self.size

    def pages(self, reply: Reply) -> int | None:
        """How many pages the whole list has, where the vendor says so and this paginator walks
        them one by one (a progress display's total)."""
        return None

    def advance(self, reply: Reply) -> bool:
        """Move to the next page; False when the list has ended."""
        following = self.following(reply)
        if following is None:
            return False
        self._read.add(_key(self.position))
        if _key(following) in self._read:
            raise PagingLoop(self.system, f"the next page would be {following!r} again: the list does not page")
        self.position = following
        return True


class PageNumberPaginator(Paginator):
    """`page=1, 2, ...`, ending on a short page or at the vendor's page total (WooCommerce's
    `X-WP-TotalPages`)."""

    first = 1

    def following(self, reply: Reply) -> Any:
        if self.short(reply) or (reply.total_pages is not None and int(self.position) >= reply.total_pages):
            return None
        return int(self.position) + 1

    def expects_more(self, reply: Reply) -> bool:
        return reply.total_pages is not None and int(self.position) < reply.total_pages

    def pages(self, reply: Reply) -> int | None:
        return reply.total_pages


class OffsetPaginator(Paginator):
    """`offset=0, size, 2*size, ...`, ending on a short page."""

    first = 0

    def following(self, reply: Reply) -> Any:
        return None if self.short(reply) else int(self.position) + self.size


class KeysetPaginator(Paginator):
    """The next page starts after the last item read: `after(reply, position)` says where, from
    the reply. Positions must grow; one that does not means the vendor ignored the filter. A vendor
    that orders keys by its database's collation (AFAS sorts text keys in any case), which Python's
    `<` does not follow, pages `ordered=False`: a next key then only has to be new."""

    def __init__(
        self,
        system: str,
        size: int,
        after: Callable[[Reply, Any], Any],
        position: Any = None,
        first: Any = None,
        *,
        ordered: bool = True,
    ) -> None:
        self.first = first
        super().__init__(system, size, position)
        self.after = after
        self.ordered = ordered

    def following(self, reply: Reply) -> Any:
        if self.short(reply):
            return None
        following = self.after(reply, self.position)
        if following is None:
            raise ApiError(self.system, "cannot page: the last item lacks the key to page on")
        if self.ordered and self.position is not None and _comparable(following) <= _comparable(self.position):
            raise PagingLoop(self.system, f"cannot page: {following!r} does not come after {self.position!r}")
        return following


class NextLinkPaginator(Paginator):
    """The vendor names the next page's URL (a `Link: rel="next"` header or a body field). It
    must stay on the configured host: credentials go wherever the next link points."""

    def __init__(self, system: str, size: int, base_url: str, position: Any = None) -> None:
        super().__init__(system, size, position)
        self.host = urlsplit(base_url).netloc

    def following(self, reply: Reply) -> Any:
        link = reply.next_link
        if not link:
            return None
        host = urlsplit(link).netloc
        if host and host != self.host:
            raise ApiError(self.system, f"the next-page link points to another host ({host}); not followed")
        return link


class CursorPaginator(Paginator):
    """GraphQL connections: `pageInfo { hasNextPage endCursor }`."""

    def following(self, reply: Reply) -> Any:
        if not reply.has_next:
            return None
        if not reply.end_cursor:
            raise ApiError(self.system, "hasNextPage without an endCursor")
        return reply.end_cursor


def _key(position: Any) -> str:
    return json.dumps(position, sort_keys=True, default=str)


def _comparable(position: Any) -> Any:
    # A tuple position comes back from a JSON checkpoint as a list: compare both as tuples.
    return tuple(position) if isinstance(position, list | tuple) else position
