#!/usr/bin/env python3
"""Open N HTTP/1.1 keep-alive connections to HOST:PORT, send one GET on each, read its answer,
then hold every connection open (idle) for at most HOLD seconds.

Used by benches/load.sh for the idle-connection memory figure. Prints `ready <n> <failed>` on
stdout once all connections have been answered, then holds them for HOLD seconds (load.sh
stops it by PID once it has measured). Loopback only: HOST must be 127.0.0.1.

usage: idle_conns.py HOST PORT N [HOLD_SECONDS] [PARALLEL_OPENS]
"""

import asyncio
import sys

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: idle-conns\r\n\r\n"
OPEN_TIMEOUT = 30.0


async def read_response(reader):
    """Read one response with a content-length body; return the status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def open_one(host, port, gate, held):
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), OPEN_TIMEOUT
            )
            writer.write(REQUEST)
            await writer.drain()
            status = await asyncio.wait_for(read_response(reader), OPEN_TIMEOUT)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            print(f"connection failed: {e!r}", file=sys.stderr)
            return False
        held.append(writer)
        return status == 200


async def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    parallel = int(sys.argv[5]) if len(sys.argv) > 5 else 256
    if host != "127.0.0.1":
        print("loopback only: HOST must be 127.0.0.1", file=sys.stderr)
        sys.exit(2)
    gate = asyncio.Semaphore(parallel)
    held = []
    results = await asyncio.gather(*(open_one(host, port, gate, held) for _ in range(n)))
    ok = sum(1 for r in results if r)
    print(f"ready {ok} {n - ok}", flush=True)
    await asyncio.sleep(hold)
    for w in held:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
