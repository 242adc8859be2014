"""Cutting a CSV byte stream into chunks of whole records, remembering where each ends, so
that scoring can stop after any chunk and resume at that byte offset later.

A record ends at a newline that is not inside a quoted field. In CSV a quote inside a
quoted field is doubled, so a newline ends a record exactly when the number of quote
characters since the last record end is even. Pure functions over bytes; vectorised, so
finding 50,000 record ends costs about a millisecond.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

NEWLINE, QUOTE = 10, 34


def record_ends(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Offsets just past each newline of `data` that ends a record (`data` starts a record)."""
    view = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(view == NEWLINE)
    if newlines.size == 0:
        return newlines
    quotes = view == QUOTE
    if quotes.any():
        quotes_before = np.cumsum(quotes, dtype=np.int64)
        newlines = newlines[quotes_before[newlines] % 2 == 0]
    return newlines + 1


@dataclass(frozen=True)
class Chunk:
    data: bytes     # whole records
    end: int        # offset in the blob just past this chunk
    last: bool      # no records follow


def chunks(blocks: Iterable[bytes], start: int, rows_per_chunk: int) -> Iterator[Chunk]:
    """Chunks of `rows_per_chunk` records (the last may be shorter) from a stream of blocks
    that begins at blob offset `start`, itself a record boundary."""
    buffer = bytearray()
    offset = start  # the blob offset of buffer[0]
    blocks = iter(blocks)
    exhausted = False
    while True:
        ends = record_ends(buffer)
        while len(ends) < rows_per_chunk and not exhausted:
            block = next(blocks, None)
            if block is None:
                exhausted = True
                break
            buffer += block
            ends = record_ends(buffer)
        if len(ends) >= rows_per_chunk:
            cut = int(ends[rows_per_chunk - 1])
        elif exhausted:
            cut = len(buffer)
        if cut == 0:
            return
        data = bytes(buffer[:cut])
        del buffer[:cut]
        offset += cut
        last = exhausted and not buffer.strip()
        yield Chunk(data, offset, last)
        if last:
            return


def split_header(blocks: Iterable[bytes], limit: int = 1 << 20) -> tuple[bytes, Iterator[bytes]]:
    """(the first record of the stream, with its newline; the stream's blocks after it). A
    first record longer than `limit` raises ValueError."""
    blocks = iter(blocks)
    buffer = bytearray()
    for block in blocks:
        buffer += block
        ends = record_ends(buffer)
        if len(ends):
            cut = int(ends[0])
            rest = bytes(buffer[cut:])
            return bytes(buffer[:cut]), _prepend(rest, blocks)
        if len(buffer) > limit:
            raise ValueError(f"the first row is longer than {limit} bytes")
    return bytes(buffer), iter(())


def _prepend(first: bytes, blocks: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from blocks
