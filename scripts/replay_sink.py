"""A minimal replay target for the benchmarks: answers every request like a LeadConduit submit (HTTP 201,
``{"outcome":"success","reason":null,"lead":{"id":...},"price":0}``) after ``--delay-ms``, with keep-alive, and
records when each request arrived. ``GET /_arrivals`` returns the arrival times (monotonic seconds) as JSON and
forgets them.

usage: python scripts/replay_sink.py --port-file FILE [--delay-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from pathlib import Path

arrivals: list[float] = []
lead_ids = itertools.count(0x6B000000_0000_0000_0000_0000)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            if path == "/_arrivals":
                body = json.dumps(arrivals).encode()
                arrivals.clear()
                status = b"200 OK"
            else:
                arrivals.append(time.monotonic())
                if delay:
                    await asyncio.sleep(delay)
                lead = f"{next(lead_ids):024x}"
                body = b'{"outcome":"success","reason":null,"lead":{"id":"' + lead.encode() + b'"},"price":0}'
                status = b"201 Created"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
            del method
    except (asyncio.IncompleteReadError, ConnectionResetError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    server = await asyncio.start_server(lambda r, w: handle(r, w, args.delay_ms / 1000), "127.0.0.1", 0, backlog=512)
    Path(args.port_file).write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
