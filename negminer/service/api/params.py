"""What routes share to read requests: a 422 naming a field, a page of a list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError

from negminer.client.schemas import ListPage

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["bad_param", "list_page"]


def bad_param(param: str, why: str, where: str = "body") -> RequestValidationError:
    """A 422 problem naming ``param`` (dotted for nested fields)."""
    return RequestValidationError([{"loc": (where, *param.split(".")), "msg": why, "type": "value_error"}])


def list_page(fetch: Callable[[], tuple[list[R], bool]], convert: Callable[[R], T], unknown: str) -> ListPage[T]:
    """One page from the store (``{object: "list", data, has_more}``); an unknown ``after`` cursor is a 422."""
    try:
        rows, more = fetch()
    except KeyError:
        raise bad_param("after", f"no {unknown}", "query") from None
    return ListPage[Any](data=[convert(r) for r in rows], has_more=more)
