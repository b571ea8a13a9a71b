"""The codec's error, in a module of its own: the compiled PackStream codec
(:mod:`proxy.codec.native`) raises this very class, which Python code catches and subclasses (a
class compiled by mypyc could not be subclassed by Python code)."""

from __future__ import annotations


class PackStreamError(ValueError):
    """Input that is not one PackStream value, or a value that has no PackStream form.

    The message says what is wrong and, for input, at which byte (also in :attr:`offset`); it
    never repeats the data, so it may go to logs and to the client.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.offset = offset
