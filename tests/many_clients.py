"""Client side of test_many_connections, run in its own process (each process has its own fd limit):
``python many_clients.py PORT PATH COUNT BATCH``. Opens COUNT upgraded raw connections in batches, then
follows commands read line by line on stdin, answering one line each on stdout:

- ``echo``: a message on a few connections spread over the range, then on all of them at once; every
  reply must be the connection's own message. Answers ``ok echo N``.
- ``close``: drops every connection (TCP abort). Answers ``ok closed`` and exits.

Any failure is answered with ``error ...`` and the process exits with status 1.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import traceback

from rawws import TEXT, RawWebSocket, accept_key, new_key, read_response_head, upgrade_request

TIMEOUT = 60.0


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


async def open_upgraded(port: int, path: str) -> RawWebSocket:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = new_key()
    writer.write(upgrade_request(path, key=key))
    response = await read_response_head(reader, timeout=TIMEOUT)
    if response.status != 101 or response.header("Sec-WebSocket-Accept") != accept_key(key):
        raise AssertionError(f"upgrade failed: {response}")
    return RawWebSocket(reader, writer, response)


async def echo_check(clients: list[RawWebSocket]) -> None:
    count = len(clients)
    for index in sorted({0, 1, count // 4, count // 2, (count * 7) // 9, count - 2, count - 1}):
        await clients[index].send_text(f"hello from {index}")
        reply = await clients[index].read_message(timeout=TIMEOUT)
        if reply != (TEXT, f"hello from {index}".encode()):
            raise AssertionError(f"connection {index} got {reply!r}")
    await asyncio.gather(*(c.send_text(f"#{i}") for i, c in enumerate(clients)))
    replies = await asyncio.gather(*(c.read_message(timeout=TIMEOUT) for c in clients))
    wrong = [i for i, reply in enumerate(replies) if reply != (TEXT, f"#{i}".encode())]
    if wrong:
        raise AssertionError(f"{len(wrong)} connections got another reply, first: {wrong[:5]}")


async def main(port: int, path: str, count: int, batch: int) -> int:
    raise_fd_limit(count + 1024)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    def answer(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    clients: list[RawWebSocket] = []
    try:
        for start in range(0, count, batch):
            n = min(batch, count - start)
            clients += await asyncio.gather(*(open_upgraded(port, path) for _ in range(n)))
        answer(f"ok ready {len(clients)}")
        while True:
            command = (await stdin.readline()).decode().strip()
            if command == "echo":
                await echo_check(clients)
                answer(f"ok echo {len(clients)}")
            elif command in ("close", ""):
                for client in clients:
                    client.writer.transport.abort()
                answer("ok closed")
                return 0
            else:
                raise ValueError(f"unknown command {command!r}")
    except Exception:
        answer("error " + traceback.format_exc().replace("\n", " | "))
        for client in clients:
            client.writer.transport.abort()
        return 1


if __name__ == "__main__":
    port, path, count, batch = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sys.exit(asyncio.run(main(port, path, count, batch)))
