"""Count a client's round trips to PostgreSQL on the wire: a TCP relay that reads the protocol.

A round trip is a time the client waits for the server. The relay holds what the client
sends until the client has been quiet for ``QUIET_S``, then passes it on as one flight: a
client that waits for an answer goes quiet (the answer cannot come before the relay passes
its messages on), and whatever a client sends without waiting (TCP segments, pipelined
statements, several Sync messages, however its library splits the writes) ends up in one
flight. So the flights are the round trips, whatever the timing of the machine. A flight
made only of Terminate (``X``, sent on close without waiting) is not counted. The flights up
to the first ReadyForQuery (``Z``) are the connection's own (startup, authentication); the
rest are the round trips "after connecting" that pgbg's figures quote. Messages are also
counted by type, so a line can say how many statements (Execute and simple Query messages) ran.

The relay slows every round trip by ``QUIET_S``: it counts, it does not time. It needs plain
text: connections through it use ``sslmode=disable`` and ``gssencmode=disable``
(``Relay.dsn``). It counts what any client sends, so it measures pgbg, psql and a bare
psycopg script alike, without touching their code.

    with Relay(host, port) as relay:
        subprocess.run([...], env={..., "PGBG_DSN": relay.dsn(dsn)})
        print(relay.sessions())  # one Connection per client session, in order
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
QUIET_S = 0.03  # how long a client stays quiet before what it sent is passed on as one flight


@dataclass
class Connection:
    """What one client connection sent and waited for."""

    flights: int = 0  # client flights (each waited for an answer)
    connect_flights: int | None = None  # of which before the first ReadyForQuery
    client_messages: Counter[str] = field(default_factory=Counter)
    cancel: bool = False  # a CancelRequest connection (Ctrl-C), not a session

    @property
    def round_trips(self) -> int:
        """Round trips after connecting."""
        return self.flights - (self.connect_flights if self.connect_flights is not None else self.flights)

    @property
    def statements(self) -> int:
        """Execute (extended protocol) and Query (simple protocol) messages."""
        return self.client_messages["E"] + self.client_messages["Q"]


class _Stream:
    """Splits one direction of the protocol into message types."""

    def __init__(self, *, client: bool) -> None:
        self.buf = b""
        self.client = client
        self.started = not client  # a client's first message has no type byte
        self.one_byte_answer = False  # the server's answer to SSLRequest/GSSENCRequest: one byte

    def feed(self, data: bytes) -> tuple[list[str], int | None]:
        """Message types completed by ``data``, and a startup code when the client sent one."""
        self.buf += data
        types: list[str] = []
        code = None
        while True:
            if self.one_byte_answer:
                if not self.buf:
                    break
                self.buf = self.buf[1:]
                self.one_byte_answer = False
                continue
            if not self.started:
                if len(self.buf) < 8:
                    break
                length, code = struct.unpack("!ii", self.buf[:8])
                if len(self.buf) < length:
                    break
                self.buf = self.buf[length:]
                if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                    self.started = True  # StartupMessage (or CancelRequest); then typed messages
                continue
            if len(self.buf) < 5:
                break
            kind = chr(self.buf[0])
            (length,) = struct.unpack("!i", self.buf[1:5])
            if len(self.buf) < 1 + length:
                break
            self.buf = self.buf[1 + length:]
            types.append(kind)
        return types, code


class Relay:
    """Listens on 127.0.0.1 and relays each connection to ``host:port``, counting (see module doc)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._closing = False

    def __enter__(self) -> Relay:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closing = True
        self._listener.close()

    def dsn(self, dsn: str) -> str:
        """``dsn`` pointed at this relay, in plain text."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(dsn)
        params.update(host="127.0.0.1", port=str(self.port), sslmode="disable", gssencmode="disable")
        params.pop("hostaddr", None)
        return make_conninfo(**params)

    def sessions(self) -> list[Connection]:
        """The connections so far that were sessions (not cancel requests)."""
        with self._lock:
            return [c for c in self.connections if not c.cancel]

    def reset(self) -> None:
        with self._lock:
            self.connections = []

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection()
            with self._lock:
                self.connections.append(conn)
            link = _Link(conn)
            for src, dst, is_client in ((client, server, True), (server, client, False)):
                thread = threading.Thread(target=self._pump, args=(src, dst, is_client, link), daemon=True)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, is_client: bool, link: _Link) -> None:
        conn = link.conn
        held = b""
        try:
            while True:
                if held and not select.select([src], [], [], QUIET_S)[0]:
                    # the client went quiet: pass its flight on
                    self._count_flight(link, held)
                    dst.sendall(held)
                    held = b""
                    continue
                data = src.recv(65536)
                if not data:
                    break
                if is_client:
                    held += data
                    continue
                with self._lock:
                    types, _ = link.server.feed(data)
                    if "Z" in types and conn.connect_flights is None:
                        conn.connect_flights = conn.flights
                dst.sendall(data)
            if held:
                self._count_flight(link, held)
                dst.sendall(held)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _count_flight(self, link: _Link, data: bytes) -> None:
        conn = link.conn
        with self._lock:
            types, code = link.client.feed(data)
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                link.server.one_byte_answer = True
            conn.cancel = conn.cancel or code == _CANCEL_REQUEST
            conn.client_messages.update(types)
            if code is not None or any(t != "X" for t in types):
                conn.flights += 1


class _Link:
    """The state both directions of one relayed connection share."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.client = _Stream(client=True)
        self.server = _Stream(client=False)
