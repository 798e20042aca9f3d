"""A blocking TLS client over Python's ssl (OpenSSL) on a memory BIO, so that a test decides how the records
it encrypts reach the socket: many in one write, or one split over many."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct

TIMEOUT = 5.0  # a safety net on every socket call, not a speed assertion


class RecordClient:
    """Connects and runs the handshake; then `records` encrypts, and the test sends through `sock`."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.plaintext = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self.incoming.write(self.sock.recv(65536))
        self.sock.sendall(self.outgoing.read())

    def records(self, *messages: bytes) -> bytes:
        """The records of `messages`, one `write` each (OpenSSL splits a write at 16 KiB)."""
        for message in messages:
            self.tls.write(message)
        return self.outgoing.read()

    def receive(self) -> None:
        """Decrypts what the server sent next onto `plaintext`."""
        chunk = self.sock.recv(65536)
        assert chunk, "the server closed the connection"
        self.incoming.write(chunk)
        with contextlib.suppress(ssl.SSLWantReadError):
            while data := self.tls.read(65536):
                self.plaintext += data

    def read_until(self, size: int) -> bytes:
        while len(self.plaintext) < size:
            self.receive()
        data, self.plaintext = self.plaintext[:size], self.plaintext[size:]
        return data

    def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.plaintext:
            self.receive()
        head, _, self.plaintext = self.plaintext.partition(b"\r\n\r\n")
        return head

    def read_frame(self) -> tuple[int, bytes]:
        first, second = self.read_until(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.read_until(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.read_until(8))
        return first & 0x0F, self.read_until(length)

    def close(self) -> None:
        self.sock.close()
