"""A TCP proxy in front of a database server that can go silent, as a hung server or pooler does.

Silent means: nothing more is forwarded in either direction, yet every socket stays open, so
neither side's kernel notices anything (no reset, no close, keepalives answered).
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Blackhole:
    """Forward 127.0.0.1:port to a server until told, or until a client sends `silent_when`."""

    def __init__(self, upstream: tuple[str, int], silent_when: bytes | None = None) -> None:
        self.upstream = upstream
        self.silent_when = silent_when.lower() if silent_when else None
        self.silent = threading.Event()
        self.seen: list[bytes] = []  # what clients sent, for tests to show when a marker is missed
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def go_silent(self) -> None:
        """Stop forwarding anything, keeping every connection open."""
        self.silent.set()

    def close(self) -> None:
        """Close every socket: the server then ends the sessions (and their transactions)."""
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                # shutdown, not just close: a pump thread blocked in recv() keeps a closed socket alive
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self) -> None:
        """Pair each client with a connection to the server, pumping both ways."""
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        """Copy bytes until the source closes; once silent, read and drop them."""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if from_client:
                self.seen.append(data)
                if self.silent_when and self.silent_when in data.lower():
                    self.silent.set()
            if self.silent.is_set():
                continue
            try:
                sink.sendall(data)
            except OSError:
                return
