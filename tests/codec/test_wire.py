"""wire.MessageReader: whole messages from a stream, however the peer cut them into chunks and
however the bytes arrive."""

from __future__ import annotations

import asyncio
import itertools
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.codec import wire

KEEP_ALIVE = b"\x00\x00"


def chunked(message: bytes, sizes: list[int]) -> bytes:
    """``message`` cut into chunks of the given sizes (cycled; the last chunk takes the rest)."""
    out = bytearray()
    at = 0
    turn = 0
    while at < len(message):
        size = min(sizes[turn % len(sizes)], len(message) - at, 0xFFFF)
        out += size.to_bytes(2, "big") + message[at : at + size]
        at += size
        turn += 1
    return bytes(out + KEEP_ALIVE)


def read_all(
    pieces: list[bytes], *, max_bytes: int = 1 << 20, read_size: int = 65_536
) -> tuple[list[bytes | None], list[int]]:
    """Every message (and the final None) read from a stream that delivers ``pieces`` one
    at a time, and how many messages had begun when each message was read."""

    async def go() -> tuple[list[bytes | None], list[int]]:
        stream = asyncio.StreamReader()
        reader = wire.MessageReader(stream, max_bytes=max_bytes, read_size=read_size)
        begun: list[int] = []

        async def feed() -> None:
            for piece in pieces:
                stream.feed_data(piece)
                await asyncio.sleep(0)
            stream.feed_eof()

        feeding = asyncio.create_task(feed())
        out: list[bytes | None] = []
        count = [0]

        def began() -> None:
            count[0] += 1

        while True:
            message = await reader.next(began)
            out.append(message)
            begun.append(count[0])
            if message is None:
                break
        await feeding
        return out, begun

    return asyncio.run(go())


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({point % (len(data) + 1) for point in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


messages_st = st.lists(st.binary(min_size=1, max_size=300), max_size=8)
sizes_st = st.lists(st.integers(min_value=1, max_value=70), min_size=1, max_size=5)


@given(
    messages=messages_st,
    sizes=sizes_st,
    keep_alives=st.lists(st.integers(0, 3), max_size=9),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
    read_size=st.sampled_from([1, 3, 64, 65_536]),
)
def test_every_message_comes_out_whole_however_it_arrives(
    messages: list[bytes], sizes: list[int], keep_alives: list[int], cuts: list[int], read_size: int
) -> None:
    stream = bytearray()
    for index, message in enumerate(messages):
        stream += KEEP_ALIVE * (keep_alives[index] if index < len(keep_alives) else 0)
        stream += chunked(message, sizes)
    stream += KEEP_ALIVE * (keep_alives[-1] if keep_alives else 0)
    out, begun = read_all(cut(bytes(stream), cuts), read_size=read_size)
    assert out == [*messages, None]
    # begun is told once per message, before the message is handed out
    assert begun == [*range(1, len(messages) + 1), len(messages)]


def test_a_message_too_large_is_refused_before_the_rest_arrives() -> None:
    async def go() -> None:
        stream = asyncio.StreamReader()
        reader = wire.MessageReader(stream, max_bytes=100)
        stream.feed_data((60).to_bytes(2, "big") + bytes(60) + (60).to_bytes(2, "big"))
        # the second chunk's bytes have not arrived: its size alone is over the limit
        with pytest.raises(wire.MessageTooLarge, match="larger than 100 bytes"):
            await reader.next()

    asyncio.run(go())


def test_a_message_of_exactly_the_limit_is_read() -> None:
    message = bytes(range(100))
    out, _ = read_all([chunked(message, [7])], max_bytes=100)
    assert out == [message, None]


@pytest.mark.parametrize(
    "tail",
    [b"\x00", (5).to_bytes(2, "big") + b"abc", (3).to_bytes(2, "big") + b"abc"],
    ids=["half a size", "inside a chunk", "between chunks"],
)
def test_closed_inside_a_message_is_a_violation(tail: bytes) -> None:
    with pytest.raises(wire.ProtocolViolation, match="closed inside a message"):
        read_all([chunked(b"whole", [2]), tail])


def test_closed_between_messages_after_keep_alives_is_the_end() -> None:
    out, _ = read_all([chunked(b"one", [9]), KEEP_ALIVE * 3])
    assert out == [b"one", None]


def test_waiting_says_whether_another_message_has_begun() -> None:
    async def go() -> None:
        stream = asyncio.StreamReader()
        reader = wire.MessageReader(stream, max_bytes=1000)
        stream.feed_data(chunked(b"run", [9]) + KEEP_ALIVE)
        assert await reader.next() == b"run"
        assert not reader.waiting  # a keep-alive is not a message
        stream.feed_data(chunked(b"pull", [9]) + chunked(b"more", [9])[:1])
        assert await reader.next() == b"pull"
        assert reader.waiting  # one byte of the next message is here

    asyncio.run(go())


def test_many_one_byte_chunks_are_scanned_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message of 20,000 one-byte chunks arriving three bytes per read: each read resumes
    where the last one stopped scanning (re-scanning from the message's start would read some
    100 million sizes), so a flood of tiny chunks costs what it sends."""
    message = bytes(20_000)
    data = chunked(message, [1])
    calls: list[tuple[int, int]] = []
    real_cut = wire.MessageReader._cut

    def resuming(self: wire.MessageReader, begun: object) -> bytes | None:
        entry = self._scan
        found = real_cut(self, None)
        if found is None and self._last is not None:  # the message is still arriving
            calls.append((entry, self._scan))
        return found

    monkeypatch.setattr(wire.MessageReader, "_cut", resuming)
    out, _ = read_all([data], read_size=3)
    assert out == [message, None]
    assert len(calls) > 10_000  # the message took that many reads
    for (_, left), (entry, _) in itertools.pairwise(calls):
        assert entry == left


def test_a_message_of_tiny_chunks_is_held_in_about_its_own_size() -> None:
    """60,000 one-byte chunks (180 kB on the wire), read 64 KiB at a time: what the reader holds
    at its peak stays near the message and one read (each chunk kept apart held 132 bytes
    per byte of message: 8 MB here)."""
    message = bytes(range(256)) * 234 + bytes(96)  # 60,000 bytes
    data = chunked(message, [1])
    tracemalloc.start()
    try:
        out, _ = read_all([data[i : i + 4096] for i in range(0, len(data), 4096)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out == [message, None]
    assert peak < 4 * len(message) + 2 * 65_536 + 200_000, peak


def test_keep_alives_between_messages_are_let_go() -> None:
    # An odd byte after each read's keep-alives: what was scanned must still be dropped.
    async def go() -> int:
        stream = asyncio.StreamReader()
        reader = wire.MessageReader(stream, max_bytes=1 << 20, max_keep_alives=10**9, read_size=64)
        stream.feed_data(b"\x00")
        for _ in range(2000):
            stream.feed_data(KEEP_ALIVE * 32)
        stream.feed_data(b"\x00" + wire.frame(b"\xb0\x0f"))
        stream.feed_eof()
        biggest = 0
        while True:
            task = asyncio.ensure_future(reader.next())
            while not task.done():
                biggest = max(biggest, len(reader._buffer))
                await asyncio.sleep(0)
            if task.result() is not None:
                assert task.result() == b"\xb0\x0f"
                return biggest

    assert asyncio.run(go()) <= 64 + 1  # one read and the odd byte, not the 128 kB sent


def test_keep_alives_without_end_are_a_violation() -> None:
    stream = KEEP_ALIVE * (wire.MAX_KEEP_ALIVES + 1) + wire.frame(b"\xb0\x0f")
    with pytest.raises(wire.ProtocolViolation, match="keep-alive"):
        read_all([stream])
    # As many as allowed, then a message: read, and the count starts again.
    allowed = KEEP_ALIVE * wire.MAX_KEEP_ALIVES + wire.frame(b"\xb0\x0f")
    assert read_all([allowed * 3])[0] == [b"\xb0\x0f"] * 3 + [None]
