"""Forward TCP to a server with a delay added each way, and count the conversation's round trips.

A client that talks to a database across a slow link pays one round-trip time for each turn of
the conversation: each time it must wait for the server's answer before it can say more. This
proxy listens on 127.0.0.1 (a free port by default), forwards every connection to the target
(PostgreSQL at 127.0.0.1:5432 by default), and delivers each chunk it reads half a round-trip
time later, in order, each direction on its own (a chunk is delayed, not each byte, and a chunk
behind another is not delayed twice). It counts:

- connections opened through it;
- round trips: the first time a connection's client sends, and each time the client sends after
  data of the server has been delivered to it (a new turn). Data the client sends while the
  server's answer is still on its way (pipelining) is the same turn. A client that keeps sending
  while a long answer streams back is counted once per interleaving, so the count is an upper
  bound for bulk transfers, and exact for request-and-answer traffic;
- of those, the unanswered: a connection's last turn when no server data followed it (a client's
  closing message, such as PostgreSQL's Terminate, costs no wait);
- bytes each way, and the round trips of each connection.

Each delivery is late by up to about a millisecond beyond the delay (the event loop's timer
resolution); a turn through the proxy with no added delay costs about 0.6 ms.

Written here because it must count turns: latency-injecting proxies (toxiproxy, tc netem) add
the delay but do not say how many times a client waited.

As a library (run.py):

    with LatencyProxy(rtt_ms=20) as proxy:
        run(f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/db")
        print(proxy.counts().round_trips)

As a script, either serving until Ctrl-C (then printing the counts as JSON), or running one
command with `{port}` in its arguments replaced by the proxy's port:

    python benchmarks/latency_proxy.py --rtt-ms 20
    python benchmarks/latency_proxy.py --rtt-ms 20 -- psql -h 127.0.0.1 -p {port} -U postgres -c 'select 1'
    python benchmarks/latency_proxy.py --self-test
    python benchmarks/latency_proxy.py --trace -- COMMAND   # each turn's first bytes on stderr
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import TracebackType

CHUNK = 65536

#: Called with a connection's index, its turn number and the chunk that opened the turn.
Trace = Callable[[int, int, bytes], None]


@dataclass
class Counts:
    """What went through the proxy since it started or was last reset."""

    connections: int = 0
    round_trips: int = 0
    #: Turns the server never answered before the connection closed (a closing Terminate).
    unanswered: int = 0
    bytes_to_server: int = 0
    bytes_to_client: int = 0
    #: Round trips of each connection, in the order the connections were opened.
    per_connection: list[int] = field(default_factory=list)


class _Conversation:
    """One proxied connection's turn-taking: who spoke last, as the client sees it."""

    def __init__(self, lock: threading.Lock, counts: Counts, trace: Trace | None) -> None:
        self.lock = lock
        self.trace = trace
        self.counts = counts  # a reset replaces the proxy's Counts: this connection's go nowhere
        self.index = len(counts.per_connection)
        self.client_may_start_turn = True  # the first send is a turn
        self.answered = True
        counts.connections += 1
        counts.per_connection.append(0)

    def client_sent(self, data: bytes) -> None:
        """Count a chunk the client sent; a new turn if the server's data reached it since."""
        with self.lock:
            self.counts.bytes_to_server += len(data)
            if not (self.client_may_start_turn and data):
                return
            self.counts.round_trips += 1
            self.counts.per_connection[self.index] += 1
            self.client_may_start_turn = False
            self.answered = False
        if self.trace is not None:
            self.trace(self.index, self.counts.per_connection[self.index], data)

    def server_delivered(self, data: bytes) -> None:
        """Note that server data reached the client: its next send starts a turn."""
        with self.lock:
            self.counts.bytes_to_client += len(data)
            self.client_may_start_turn = True
            self.answered = True

    def closed(self) -> None:
        """Count the last turn as unanswered if no server data followed it."""
        with self.lock:
            if not self.answered:
                self.counts.unanswered += 1


class LatencyProxy:
    """A TCP proxy with a one-way delay of rtt_ms / 2 each way, counting round trips; see the module."""

    def __init__(
        self,
        target_host: str = "127.0.0.1",
        target_port: int = 5432,
        rtt_ms: float = 20.0,
        listen_host: str = "127.0.0.1",
        port: int = 0,
        trace: Trace | None = None,
    ) -> None:
        """Prepare to forward to the target; `trace(connection, turn, data)` sees each turn's first chunk."""
        self.target = (target_host, target_port)
        self.rtt_ms = rtt_ms
        self.listen = (listen_host, port)
        self.port = port
        self._lock = threading.Lock()
        self._counts = Counts()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._trace = trace
        self._open = 0
        self._idle = threading.Condition(self._lock)

    @property
    def rtt_ms(self) -> float:
        """Return the added round-trip time in milliseconds."""
        return self.one_way * 2000

    @rtt_ms.setter
    def rtt_ms(self, value: float) -> None:
        """Change the added round-trip time; chunks read from now on get the new delay."""
        self.one_way = value / 2000

    # --- control, from any thread ----------------------------------------------------------

    def start(self) -> LatencyProxy:
        """Start serving in a background thread; return once the port is listening."""
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Close the listener and every proxied connection; wait for the thread to end."""
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join()
            self._thread = None

    def counts(self) -> Counts:
        """Return a copy of the counts so far."""
        with self._lock:
            c = self._counts
            return Counts(
                c.connections,
                c.round_trips,
                c.unanswered,
                c.bytes_to_server,
                c.bytes_to_client,
                list(c.per_connection),
            )

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every proxied connection has closed (its last counts are in); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._open == 0, timeout)

    def reset(self) -> None:
        """Start counting from zero (connections still open are no longer counted)."""
        with self._lock:
            self._counts = Counts()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- the event loop's side -------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to start() if it failed before listening
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._proxy(reader, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        server = await asyncio.start_server(accept, *self.listen)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _proxy(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        for writer in (client_w, server_w):
            sock = writer.get_extra_info("socket")
            if sock is not None:  # forward each chunk at once: the delay is ours to add
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            conversation = _Conversation(self._lock, self._counts, self._trace)
            self._open += 1
        pumps = [
            asyncio.ensure_future(self._pump(client_r, server_w, conversation.client_sent, None)),
            asyncio.ensure_future(self._pump(server_r, client_w, None, conversation.server_delivered)),
        ]
        try:
            # One side resetting the connection (an OSError in its pump) ends both.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, server_w):
                writer.close()
            conversation.closed()
            with self._idle:
                self._open -= 1
                self._idle.notify_all()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_read: Callable[[bytes], None] | None,
        on_delivered: Callable[[bytes], None] | None,
    ) -> None:
        """Copy one direction: read chunks as they come, deliver each one_way seconds later."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                if on_delivered is not None:
                    on_delivered(data)

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
                if on_read is not None:
                    on_read(data)
                queue.put_nowait((loop.time() + self.one_way, data))
                if not data:
                    break
            await delivering
        finally:
            delivering.cancel()


# --- script ----------------------------------------------------------------------------------


def self_test(rtt_ms: float = 20.0) -> None:
    """Check the counts and the delay against a local echo server; exit 1 if they are wrong."""
    listener = socket.create_server(("127.0.0.1", 0))
    echo_port = listener.getsockname()[1]

    def echo() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(CHUNK):
                    conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    problems = []
    with LatencyProxy("127.0.0.1", echo_port, rtt_ms=rtt_ms) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as database clients do
            start = time.perf_counter()
            for word in (b"one", b"two", b"three"):  # three request-and-answer turns
                sock.sendall(word)
                if _recv_exactly(sock, len(word)) != word:
                    problems.append(f"echo of {word!r} came back wrong")
            elapsed = time.perf_counter() - start
            sock.sendall(b"a")  # two sends before the answer: one turn
            sock.sendall(b"b")
            _recv_exactly(sock, 2)
        proxy.wait_idle()
        counts = proxy.counts()
    listener.close()
    got = (counts.connections, counts.round_trips, counts.unanswered)
    if got != (1, 4, 0):
        problems.append(f"counted {got} connections, round trips, unanswered; want (1, 4, 0)")
    if not 3 * rtt_ms / 1000 <= elapsed < 3 * rtt_ms / 1000 + 0.05:
        problems.append(f"three turns took {elapsed * 1000:.1f} ms; want about {3 * rtt_ms:.0f} ms")
    for problem in problems:
        print(f"self-test: {problem}", file=sys.stderr)
    print(
        f"self-test: {'failed' if problems else 'ok'} ({json.dumps(asdict(counts))}, {elapsed * 1000:.1f} ms)"
    )
    sys.exit(1 if problems else 0)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            break
        data += more
    return data


def _print_turn(connection: int, turn: int, data: bytes) -> None:
    print(f"connection {connection} turn {turn}: {data[:160]!r}", file=sys.stderr)


def main() -> None:
    """Serve until Ctrl-C, or run one command through the proxy; print the counts as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target", default="127.0.0.1:5432", help="HOST:PORT to forward to (default: %(default)s)"
    )
    parser.add_argument(
        "--rtt-ms", type=float, default=20.0, help="added round-trip time (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--self-test", action="store_true", help="check the proxy against an echo server")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print the start of each turn's first chunk on stderr (shows data!)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS ({port} is replaced)")
    args = parser.parse_args()
    if args.self_test:
        if args.rtt_ms < 5:  # below that, scheduling decides whether a pipelined pair is one turn
            parser.error("--self-test needs --rtt-ms of 5 or more")
        self_test(args.rtt_ms)
    host, _, port = args.target.rpartition(":")
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    code = 0
    trace = _print_turn if args.trace else None
    with LatencyProxy(host, int(port), rtt_ms=args.rtt_ms, port=args.port, trace=trace) as proxy:
        if command:
            start = time.perf_counter()
            code = subprocess.call([part.replace("{port}", str(proxy.port)) for part in command])
            seconds = time.perf_counter() - start
            proxy.wait_idle()
            print(json.dumps({**asdict(proxy.counts()), "seconds": round(seconds, 3), "exit": code}))
        else:
            print(
                f"forwarding 127.0.0.1:{proxy.port} -> {args.target}, {args.rtt_ms} ms round trip; Ctrl-C ends",
                flush=True,
            )
            stop = threading.Event()
            for number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(number, lambda *_: stop.set())
            while not stop.wait(0.5):
                pass
            proxy.wait_idle(1.0)
            print(json.dumps(asdict(proxy.counts())))
    sys.exit(code)


if __name__ == "__main__":
    main()
