"""The benchmark app on socketify (uWebSockets through CFFI).

/echo: `ws.send(message, opcode)` from the message handler; /sub: `ws.subscribe("bench")`; /pub: every message
received goes out with `app.publish("bench", ...)` (uWebSockets' native pub/sub, fanned out in C++); /slow: the
handler puts each message on a queue that a task works through, SLOW_DELAY per binary message (socketify has no way
to pause reading a WebSocket, so a flood piles up in that queue), and answers a text message with the tally;
/echoz: /echo with `CompressOptions.SHARED_COMPRESSOR` (permessage-deflate when the client offers it) and
`compress=True` on each send (uWebSockets compresses only the sends that ask for it); /json: the "typical app"
(`_common.json_reply`) answering each message with `ws.send(..., OpCode.TEXT)`.

socketify runs its own libuv loop with an asyncio loop inside (uvloop's when installed, for the /slow tasks). Its
native library needs libuv.so.1: setup_peers.sh unpacks Debian's libuv1 into benches/.peers and compare.py puts
it on LD_LIBRARY_PATH. With `--cert` and `--key` it serves TLS (wss://) with them (uWebSockets' SSL app:
`AppOptions(cert_file_name=..., key_file_name=...)`). Prints READY once listening.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from _common import SLOW_DELAY, Tally, json_reply, parse_args

MAX = 16 * 1024 * 1024
TOPIC = "bench"


def main(host: str, port: int, no_uvloop: bool, tls: tuple[str, str] | None) -> None:
    if not no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from socketify import App, AppListenOptions, AppOptions, CompressOptions, OpCode
    from socketify.native import ffi

    def key(ws: Any) -> int:  # each callback gets a new wrapper: key the queue by the native socket
        return int(ffi.cast("uintptr_t", ws.ws))

    app = App(AppOptions(cert_file_name=tls[0], key_file_name=tls[1]) if tls else None)

    def behavior(**handlers: Any) -> dict[str, Any]:
        return {
            "compression": handlers.pop("compression", CompressOptions.DISABLED),
            "max_payload_length": MAX,
            "idle_timeout": 0,
            "max_backpressure": 64 * 1024 * 1024,
            **handlers,
        }

    def echo(ws: Any, message: Any, opcode: Any) -> None:
        ws.send(message, opcode)

    def echoz(ws: Any, message: Any, opcode: Any) -> None:
        ws.send(message, opcode, compress=True)

    def json_app(ws: Any, message: Any, opcode: Any) -> None:
        ws.send(json_reply(message), OpCode.TEXT)

    def sub_open(ws: Any) -> None:
        ws.subscribe(TOPIC)

    def pub(ws: Any, message: Any, opcode: Any) -> None:
        app.publish(TOPIC, message, opcode)

    queues: dict[int, asyncio.Queue[tuple[Any, Any]]] = {}

    async def slow_work(ws: Any, queue: asyncio.Queue[tuple[Any, Any]]) -> None:
        tally = Tally()
        while True:
            message, opcode = await queue.get()
            if opcode == OpCode.TEXT:
                ws.send(tally.answer(), OpCode.TEXT)
            else:
                tally.add(message)
                await asyncio.sleep(SLOW_DELAY)

    def slow_open(ws: Any) -> None:
        queue: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()
        queues[key(ws)] = queue
        app.run_async(slow_work(ws, queue))

    def slow_close(ws: Any, code: int, message: Any) -> None:
        queues.pop(key(ws), None)

    def slow_message(ws: Any, message: Any, opcode: Any) -> None:
        queues[key(ws)].put_nowait((message, opcode))

    app.ws("/echo", behavior(message=echo))
    app.ws("/echoz", behavior(message=echoz, compression=CompressOptions.SHARED_COMPRESSOR))
    app.ws("/json", behavior(message=json_app))
    app.ws("/sub", behavior(open=sub_open))
    app.ws("/pub", behavior(message=pub))
    app.ws("/slow", behavior(open=slow_open, message=slow_message, close=slow_close))

    def listening(config: Any) -> None:
        loop = type(app.loop.loop).__module__.split(".")[0]
        kind = ", TLS" if tls else ""
        print(f"socketify: listening (libuv + {loop}{kind})", file=sys.stderr, flush=True)
        print("READY", flush=True)

    app.listen(AppListenOptions(port=port, host=host), listening)
    app.run()


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    main(args.host, args.port, args.no_uvloop, (args.cert, args.key) if args.cert else None)
