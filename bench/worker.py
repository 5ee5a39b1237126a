"""One measured process of the benchmark, run as `python -m bench.worker <sync|ceiling> '<json args>'`.

`sync` runs one pendo_sync run (run_sync, exactly as `pendo-sync run` does) and prints its figures,
including this process's own peak RSS, so memory is that of the sync alone (not the emulator, not the
table generator). `ceiling` is the ideal client: batches of the same records pre-serialized before the
clock starts, posted with httpx at the same concurrency and batch size, doing nothing else.
Either prints one JSON line on stdout. With "profile" set, `sync` also writes cProfile stats of every
thread (CPU time per thread, so waiting does not count) to that path.
"""

from __future__ import annotations

import asyncio
import cProfile
import itertools
import json
import pstats
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.emulator_process import KEY
from pendo_sync.config import parse_config
from pendo_sync.engine.run import RunOptions, run_sync
from pendo_sync.pendo.client import PendoClient
from pendo_sync.state.store import StateStore
from pendo_sync.warehouse.engines import make_engine


def peak_rss_mb() -> float:
    """This process's high-water resident set (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """cProfile on this thread and on every thread started inside the block, merged into one file."""
    if not path:
        yield
        return
    profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def run_profiled(thread: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.runcall(original_run, thread)

    main = cProfile.Profile(time.thread_time)
    profiles.append(main)
    threading.Thread.run = run_profiled  # type: ignore[method-assign]
    main.enable()
    try:
        yield
    finally:
        main.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
        stats = pstats.Stats(main)
        for profile in profiles[1:]:
            try:
                stats.add(profile)
            except TypeError:  # a thread still running when the block ended has no stats yet
                continue
        stats.dump_stats(path)


def sync(args: dict[str, Any]) -> dict[str, Any]:
    config = parse_config(args["config"], "bench")
    (spec,) = config.syncs
    engine = make_engine(args["url"])
    state = StateStore(engine, config.state_schema)
    connections = config.delivery.concurrency * 2

    def client() -> PendoClient:
        return PendoClient(args["emulator_url"], KEY, timeout_seconds=300, max_connections=connections)

    options = RunOptions(mode=args["mode"], progress=lambda _: None)
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    with profiled(args.get("profile")):
        outcome = run_sync(spec, engine, state, client, config.delivery, options)
    wall = time.perf_counter() - started
    return {
        "status": outcome.status,
        "wall_s": wall,
        "counts": outcome.counts.as_dict(),
        "peak_rss_mb": peak_rss_mb(),
        "cpu_s": cpu_seconds() - cpu_before,
    }


def _bodies(args: dict[str, Any]) -> list[bytes]:
    """Distinct pre-serialized batches, encoded by the sync's own encoder from benchmark rows."""
    from bench.data import account_ids, visitor_frame
    from pendo_sync.engine.batches import Batch
    from pendo_sync.engine.records import RecordEncoder

    (spec,) = parse_config(args["config"], "bench").syncs
    encoder = RecordEncoder(spec)
    batch, distinct = args["batch"], args["distinct_batches"]
    accounts = account_ids(max(1, batch * distinct // 20), 7)
    frame = visitor_frame(0, batch * distinct, accounts, 7)
    columns = ["visitor_id", *spec.columns]
    rows = frame[columns].astype(object).where(frame[columns].notna(), None).itertuples(index=False)
    ids, encoded = [], []
    for row in rows:
        ids.append(row[0])
        encoded.append(encoder.encode(row[0], tuple(_plain(v) for v in row[1:])))
    return [Batch.of(ids[i : i + batch], encoded[i : i + batch]).body for i in range(0, len(encoded), batch)]


def _plain(value: Any) -> Any:
    """numpy/pandas scalars as the Python values a database driver would hand over."""
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


async def _post_all(args: dict[str, Any], bodies: list[bytes]) -> dict[str, Any]:
    batch, concurrency = args["batch"], args["concurrency"]
    calls = -(-args["records"] // batch)
    source: Callable[[], bytes] = itertools.cycle(bodies).__next__
    url = f"{args['emulator_url']}/api/v1/metadata/visitor/custom/value"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"x-pendo-integration-key": KEY, "content-type": "application/json"}
    figures = {"calls": 0, "retries": 0}
    remaining = iter(range(calls))

    async def post_loop(http: httpx.AsyncClient) -> None:
        for _ in remaining:
            body = source()
            while True:
                figures["calls"] += 1
                response = await http.post(url, content=body, params={"create": "true"})
                if response.status_code != 429:
                    response.raise_for_status()
                    break
                figures["retries"] += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=300) as http:
        started = time.perf_counter()
        await asyncio.gather(*(post_loop(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"wall_s": wall, "records": calls * batch, **figures}


def ceiling(args: dict[str, Any]) -> dict[str, Any]:
    bodies = _bodies(args)
    cpu_before = cpu_seconds()
    result = asyncio.run(_post_all(args, bodies))
    return {**result, "cpu_s": cpu_seconds() - cpu_before}


def main(argv: list[str]) -> int:
    command, raw = argv
    result = {"sync": sync, "ceiling": ceiling}[command](json.loads(raw))
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
