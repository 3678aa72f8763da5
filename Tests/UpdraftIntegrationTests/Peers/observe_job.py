"""Observes an Updraft job resource with aiocoap until a job offer arrives.

Usage: observe_job.py URI [TIMEOUT_SECONDS]

Prints one line per representation: "representation <code> <payload>". The first one is
the current state ({} when no job is pending); the test releases a job once it sees it.
Exits 0 after printing "offer <payload>" for the first payload that holds a "job",
1 on timeout, 2 when the observation fails.
"""

import asyncio
import json
import sys

from aiocoap import GET, Context, Message


async def main(uri: str, timeout: float) -> int:
    context = await Context.create_client_context()
    request = Message(code=GET, uri=uri, observe=0)
    pending = context.request(request)
    try:
        first = await asyncio.wait_for(pending.response, timeout)
        print(f"representation {first.code.dotted} {first.payload.decode()}", flush=True)
        if not first.code.is_successful():
            return 2
        if has_job(first.payload):
            print(f"offer {first.payload.decode()}", flush=True)
            return 0

        async def notifications() -> int:
            async for notification in pending.observation:
                print(f"representation {notification.code.dotted} {notification.payload.decode()}", flush=True)
                if has_job(notification.payload):
                    print(f"offer {notification.payload.decode()}", flush=True)
                    return 0
            print("observation ended without an offer", flush=True)
            return 2

        return await asyncio.wait_for(notifications(), timeout)
    except asyncio.TimeoutError:
        print("timeout", flush=True)
        return 1
    except Exception as error:  # the test reads the reason from the output
        print(f"error {error!r}", flush=True)
        return 2
    finally:
        pending.observation.cancel()
        await context.shutdown()


def has_job(payload: bytes) -> bool:
    try:
        return "job" in json.loads(payload)
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 60)))
