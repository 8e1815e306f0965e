"""A TCP proxy that adds network latency in front of PostgreSQL and counts statements.

    python bench/latency_proxy.py --listen 127.0.0.1:0 --target 127.0.0.1:5432 --delay-ms 1

A real BMDB is a CockroachDB cluster across a network: every round trip costs 1-5 ms.
Put this proxy between webug (or anything speaking the PostgreSQL wire protocol) and a
local server to pay that cost on loopback, and to count what a request costs in
statements and round trips.

Latency: every chunk read from either side is written to the other side `delay`
seconds after it was read (a round trip costs 2 x delay more). Each connection has two
pipes, each with its own FIFO of (due time, chunk) and a writer task that waits for
the head's due time: order is kept, reading never waits for writing (throughput is
not one chunk per delay), and connections never wait for each other. `delay` may be
changed at any time; it applies to chunks read from then on.

Counting: the client->server stream is parsed as the PostgreSQL frontend protocol (an
untyped startup packet, SSLRequest/GSSENCRequest answered by one byte from the server,
then typed messages: 1 byte type + 4-byte length that includes itself). Per connection
and in total it counts:

- statements  = simple Query ('Q') + Execute ('E') messages;
- round trips = Sync ('S') + Query ('Q') + Flush ('H') messages: each is a point where
  the client waits for the server.

asyncpg (0.32) runs a new statement as Parse/Describe/Flush, then, with the reply,
Bind/Execute/Sync (1 statement, 2 round trips), a cached prepared one as
Bind/Execute/Sync (1, 1), and `execute("BEGIN")` without arguments as a simple Query
(1, 1). A client that pipelines (sends more after a Flush or Sync without waiting for
the reply) would be counted more round trips than it waits for; asyncpg does not. If
the server accepts TLS the stream is opaque and that connection is no longer counted.

Timers: the proxy runs on its own plain asyncio loop over `select()`, whose timeouts
have microsecond resolution (epoll's and libuv's are whole milliseconds, which would
turn a 0.5 ms delay into 0 or 1 ms). `ProxyThread` runs it on a thread of its own, so
a benchmark on another event loop (uvloop) can read the counters and set the delay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import selectors
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CHUNK = 256 * 1024

Target = tuple[str, int] | str  # a server's TCP (host, port), or its Unix socket's path


@dataclass
class Counters:
    statements: int = 0
    round_trips: int = 0
    messages: int = 0
    server_bytes: int = 0  # what the server sent: how much the client read

    def copy(self) -> Counters:
        return Counters(self.statements, self.round_trips, self.messages, self.server_bytes)

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            self.statements - other.statements,
            self.round_trips - other.round_trips,
            self.messages - other.messages,
            self.server_bytes - other.server_bytes,
        )


@dataclass
class ConnectionStats:
    peer: str
    counters: Counters = field(default_factory=Counters)
    open: bool = True
    opaque: bool = False  # TLS was accepted: no longer parsed


class FrontendParser:
    """Incremental parser of the client->server stream: counts messages by type.

    Never copies payloads: it keeps at most one header (8 bytes) and skips the rest.
    """

    def __init__(self, stats: ConnectionStats, total: Counters) -> None:
        self.stats = stats
        self.total = total
        self.startup = True  # the next packet is untyped (startup, SSLRequest, cancel)
        self.awaiting_reply = False  # an SSLRequest/GSSENCRequest awaits the server's byte
        self._header = bytearray()
        self._skip = 0

    def server_bytes(self, data: bytes) -> None:
        """Sees the server->client stream: counts it, and reads the one-byte answer to an
        SSLRequest."""
        for counters in (self.stats.counters, self.total):
            counters.server_bytes += len(data)
        if self.awaiting_reply and data:
            self.awaiting_reply = False
            if data[:1] in (b"S", b"G"):  # TLS/GSS encryption follows: opaque from now on
                self.stats.opaque = True

    def feed(self, data: bytes) -> None:
        if self.stats.opaque:
            return
        view = memoryview(data)
        while view:
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
                continue
            want = 8 if self.startup else 5
            n = min(want - len(self._header), len(view))
            self._header += view[:n]
            view = view[n:]
            if len(self._header) < want:
                return
            if self.startup:
                length, code = struct.unpack("!II", self._header)
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    self.awaiting_reply = True  # another untyped packet follows
                else:
                    self.startup = False
                self._skip = length - 8
            else:
                kind = self._header[0]
                (length,) = struct.unpack("!I", self._header[1:5])
                self._count(kind)
                self._skip = length - 4
            self._header.clear()

    def _count(self, kind: int) -> None:
        for counters in (self.stats.counters, self.total):
            counters.messages += 1
            if kind in (0x51, 0x45):  # 'Q', 'E'
                counters.statements += 1
            if kind in (0x51, 0x53, 0x48):  # 'Q', 'S', 'H'
                counters.round_trips += 1


class LatencyProxy:
    """Listens on `listen`, forwards to `target`, delays each direction by `delay` s."""

    def __init__(self, target: Target, delay: float = 0.0) -> None:
        self.target = target
        self.delay = delay
        self.total = Counters()
        self.connections: list[ConnectionStats] = []
        self.address: tuple[str, int] | None = None
        self.last_activity = time.monotonic()
        self._server: asyncio.Server | None = None
        self._in_flight = 0  # chunks read and not yet written

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def idle_for(self) -> float:
        """Seconds since the last byte went through, 0 while chunks are in flight."""
        return 0.0 if self._in_flight else time.monotonic() - self.last_activity

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        peer = client_w.get_extra_info("peername")
        stats = ConnectionStats(f"{peer[0]}:{peer[1]}" if peer else "?")
        self.connections.append(stats)
        try:
            if isinstance(self.target, str):
                server_r, server_w = await asyncio.open_unix_connection(self.target)
            else:
                server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            stats.open = False
            client_w.close()
            return
        parser = FrontendParser(stats, self.total)
        pipes = [
            asyncio.create_task(self._pipe(client_r, server_w, parser.feed)),
            asyncio.create_task(self._pipe(server_r, client_w, parser.server_bytes)),
        ]
        try:
            # When one side ends, the other has nothing left to talk to.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            for writer in (client_w, server_w):
                writer.close()
            stats.open = False

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, see):
        """Copies reader to writer, each chunk `delay` after it was read, in order."""
        loop = asyncio.get_running_loop()
        queue: deque[tuple[float, bytes]] = deque()
        ready = asyncio.Event()

        async def write_when_due() -> None:
            while True:
                while not queue:
                    ready.clear()
                    await ready.wait()
                due, chunk = queue[0]
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                queue.popleft()
                self._in_flight -= 1
                if not chunk:
                    return  # end of stream, in order with the data before it
                writer.write(chunk)
                self.last_activity = time.monotonic()
                await writer.drain()

        writing = asyncio.create_task(write_when_due())
        try:
            while True:
                try:
                    chunk = await reader.read(CHUNK)
                except OSError:
                    chunk = b""
                now = loop.time()
                self.last_activity = time.monotonic()
                see(chunk)
                queue.append((now + self.delay, chunk))
                self._in_flight += 1
                ready.set()
                if not chunk:
                    break
            await writing
        finally:
            if not writing.done():
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
            self._in_flight -= len(queue)


def select_loop() -> asyncio.AbstractEventLoop:
    """A plain asyncio loop on select(): microsecond timer resolution (see the docstring)."""
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


class ProxyThread:
    """A LatencyProxy on its own thread and event loop; usable from any other loop.

    Counters and `delay` are plain attributes: read and set them from the caller's thread.
    """

    def __init__(self, target: Target, delay: float = 0.0) -> None:
        self.proxy = LatencyProxy(target, delay)
        self._loop = select_loop()
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.proxy.start(host, port), self._loop).result()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def delay(self) -> float:
        return self.proxy.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self.proxy.delay = seconds

    @property
    def total(self) -> Counters:
        return self.proxy.total.copy()

    async def settle(self, idle: float = 0.05, at_most: float = 5.0) -> None:
        """Returns once nothing went through for `idle` s (chunks in flight included): a
        request's last statements (a ROLLBACK after the response) are then counted."""
        deadline = time.monotonic() + at_most
        # Polled: the proxy's state lives on another thread's event loop.
        while self.proxy.idle_for() < idle and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(idle / 5)


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def dsn_target(dsn: str) -> Target:
    """Where a PostgreSQL URI connects: (host, port), or the Unix socket's path when its
    host is a directory (`postgresql://u@/db?host=/run/postgresql`)."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = query.get("port", [parts.port])[0]
    if not host.startswith("/"):
        return host, int(port or 5432)
    if port is None:  # the one server whose socket is in that directory
        sockets = [p for p in Path(host).glob(".s.PGSQL.*") if not p.name.endswith(".lock")]
        if len(sockets) == 1:
            return str(sockets[0])
    return str(Path(host) / f".s.PGSQL.{port or 5432}")


def dsn_through(dsn: str, address: tuple[str, int]) -> str:
    """The same URI (user, database, options) to a proxy listening at `address`."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query, True) if k not in ("host", "port")]
    credentials = parts.netloc.rpartition("@")[0]
    host, port = address
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


async def serve(args: argparse.Namespace) -> None:
    target = args.target if args.target.startswith("/") else host_port(args.target)
    proxy = LatencyProxy(target, args.delay_ms / 1000)
    host, port = await proxy.start(*host_port(args.listen))
    print(
        f"listening on {host}:{port} -> {args.target}, {args.delay_ms} ms per direction",
        flush=True,
    )
    shown = None
    try:
        while True:
            await asyncio.sleep(args.report_every)
            now = (proxy.total.statements, proxy.total.round_trips)
            if now != shown:
                shown = now
                print(
                    f"statements {now[0]}  round trips {now[1]}"
                    f"  connections {sum(c.open for c in proxy.connections)} open",
                    flush=True,
                )
    finally:
        for c in proxy.connections:
            print(
                f"  {c.peer}: statements {c.counters.statements},"
                f" round trips {c.counters.round_trips}{' (TLS: not counted)' if c.opaque else ''}"
            )
        await proxy.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument(
        "--target", default="127.0.0.1:5432", help="host:port, or a Unix socket's path"
    )
    parser.add_argument("--delay-ms", type=float, default=1.0, help="per direction")
    parser.add_argument("--report-every", type=float, default=1.0, help="seconds")
    args = parser.parse_args()
    # Ctrl-C cancels serve(), which then prints the per-connection counts.
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=select_loop) as r:
        r.run(serve(args))


if __name__ == "__main__":
    main()
