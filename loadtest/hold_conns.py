#!/usr/bin/env python3
"""Opens COUNT HTTP/1.1 keep-alive connections to HOST:PORT, sends one request on each, reads
the response, and then keeps every connection open and idle. Prints one JSON line when all
are established ({"open": N, "failed": M}) and holds them until stdin closes or SIGTERM.

Usage: python3 loadtest/hold_conns.py HOST PORT COUNT [HOST_HEADER]
"""

import asyncio
import json
import resource
import signal
import sys

PARALLEL_CONNECTS = 256


async def open_one(host, port, request, gate):
    async with gate:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            return writer if status.startswith(b"2") else None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError):
            return None


async def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    host_header = sys.argv[4] if len(sys.argv) > 4 else f"{host}:{port}"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = f"GET / HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode()
    gate = asyncio.Semaphore(PARALLEL_CONNECTS)
    writers = await asyncio.gather(*(open_one(host, port, request, gate) for _ in range(count)))
    open_ = [w for w in writers if w is not None]
    print(json.dumps({"open": len(open_), "failed": count - len(open_)}), flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: done.done() or done.set_result(None))
    loop.add_reader(sys.stdin, lambda: done.done() or done.set_result(None))
    await done
    for w in open_:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
