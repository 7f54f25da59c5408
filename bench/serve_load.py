"""Load test of `seqlab serve` on this machine (127.0.0.1 only; bounded in time).

    python bench/serve_load.py                       # trains a quick default-size transformer, 60 s per level
    python bench/serve_load.py runs/latest --duration 15

For each concurrency level (1, 4, 16, 64) a closed loop of clients sends
streaming completions for --duration seconds: requests/s, generated tokens/s,
p50/p99 latency, time to first token, replies by status, and the server's CPU use (so
tokens per server CPU-second can be compared when the machine is shared). The same load runs
against a server started with --max-batch 1 (no batching) in the same run, interleaved: both
servers stay up, and each of --rounds rounds measures every level on one, then on the other, for
--duration / --rounds seconds, so a machine that gets busier part way slows both alike. The
throughput ratio at concurrency 16 is printed with a 95% bootstrap interval over the rounds (each
round's pair resampled together) and each round's own ratio. Then an overload phase: far
more clients than the server can hold, a short queue deadline and a short
queue (refused clients wait as Retry-After says); /health is probed throughout. It must keep answering, what cannot be
taken must get 429/503, nothing may get a 5xx other than 503, and every
accepted (200) stream must end with `data: [DONE]`.
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table  # noqa: E402

from seqlab.stats import bootstrap_ratio  # noqa: E402

PROMPTS = ["ROMEO:\n", "JULIET:\nO ", "First Citizen:\nWe are ", "KING RICHARD III:\n", "To be, or not",
           "MENENIUS:\nWhat, ", "The quality of mercy ", "HAMLET:\nAy, "]


def quick_run(steps: int) -> str:
    """A default-size transformer trained briefly on the bundled corpus: speed does not depend on quality."""
    from seqlab.config import RunConfig, TrainConfig
    from seqlab.train import train

    out = Path(tempfile.mkdtemp(prefix="serve-load-")) / "run"
    cfg = RunConfig(arch="transformer")
    cfg.train = TrainConfig(max_steps=steps, batch_size=16, seq_len=128, eval_every_steps=steps, eval_tokens=4096,
                            threads=1)
    if hasattr(cfg, "counts"):
        cfg.counts.enabled = False  # scoring's count model plays no part in serving
    train(cfg, out, log=lambda *a: None)
    return str(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`seqlab serve` in a subprocess on 127.0.0.1."""

    def __init__(self, run: str, *flags: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "seqlab", "serve", run, "--port", str(self.port),
                                      *flags], stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise SystemExit("seqlab serve did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def one_request(http: httpx.AsyncClient, prompt: str, max_tokens: int) -> dict:
    """One streaming completion: status, latency, time to first token, tokens, and whether it ended properly."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    result = {"status": None, "ttft": None, "tokens": 0, "complete": False, "retry_after": 0.0}
    try:
        async with http.stream("POST", "/v1/completions", json=body) as r:
            result["status"] = r.status_code
            if r.status_code == 200:
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        result["complete"] = True
                        break
                    if result["ttft"] is None:  # the server sends no empty text chunks: this is the first token
                        result["ttft"] = time.perf_counter() - t0
                    if '"usage"' in line:  # only the last chunk is parsed, to keep the client's CPU share small
                        result["tokens"] = json.loads(line[6:])["usage"]["completion_tokens"]
            else:
                await r.aread()
                result["retry_after"] = float(r.headers.get("retry-after", 1))
    except httpx.HTTPError as e:
        result["status"] = type(e).__name__
    result["latency"] = time.perf_counter() - t0
    return result


async def closed_loop(url: str, concurrency: int, seconds: float, max_tokens: int) -> tuple[list[dict], float]:
    """`concurrency` clients, each sending its next request when the last one ends, until `seconds` pass."""
    # idle connections are dropped before uvicorn's 5 s keep-alive timeout, so a reused one is never half-closed
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8,
                          keepalive_expiry=2.0)
    results: list[dict] = []
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        t0 = time.perf_counter()
        end = t0 + seconds

        async def client(i: int):
            n = 0
            while time.perf_counter() < end:
                results.append(await one_request(http, PROMPTS[(i + n) % len(PROMPTS)], max_tokens))
                n += 1
                if results[-1]["status"] in (429, 503):
                    await asyncio.sleep(results[-1]["retry_after"])  # a refused client waits as Retry-After asks

        await asyncio.gather(*(client(i) for i in range(concurrency)))
        return results, time.perf_counter() - t0


def summarize(results: list[dict], elapsed: float) -> dict:
    ok = [r for r in results if r["status"] == 200 and r["complete"]]
    lat = np.array([r["latency"] for r in ok]) if ok else np.zeros(1)
    ttft = np.array([r["ttft"] for r in ok if r["ttft"] is not None]) if ok else np.zeros(1)
    statuses = Counter(str(r["status"]) + ("" if r["status"] != 200 or r["complete"] else " (cut)") for r in results)
    return {"rps": len(ok) / elapsed, "tps": sum(r["tokens"] for r in ok) / elapsed,
            "p50": np.percentile(lat, 50), "p99": np.percentile(lat, 99),
            "ttft50": np.percentile(ttft, 50), "ttft99": np.percentile(ttft, 99),
            "statuses": dict(statuses)}


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) a process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interleaved_levels(run: str, servers: dict, levels: list[int], rounds: int, seconds: float,
                       max_tokens: int) -> dict:
    """{label: {level: [(results, elapsed, server CPU seconds) per round]}}: every server started once, then in each
    round every level measured on each server in turn. CPU seconds, so tokens per server CPU-second can be compared
    when the machine is shared and the two servers get different CPU shares."""
    started = {label: Server(run, *flags) for label, flags in servers.items()}
    out = {label: {c: [] for c in levels} for label in servers}
    try:
        for server in started.values():
            asyncio.run(closed_loop(server.url, 1, 1.0, max_tokens))  # warm-up, not counted
        for r in range(rounds):
            for c in levels:
                for label, server in started.items():
                    cpu0 = cpu_seconds(server.proc.pid)
                    results, elapsed = asyncio.run(closed_loop(server.url, c, seconds / rounds, max_tokens))
                    cpu1 = cpu_seconds(server.proc.pid)
                    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else float("nan")
                    out[label][c].append((results, elapsed, cpu))
                    s = summarize(results, elapsed)
                    print(f"[round {r + 1}/{rounds} {label} c={c}] {s['rps']:.1f} req/s, {s['tps']:.0f} tok/s, "
                          f"server CPU {cpu / elapsed:.2f} cores, {s['statuses']}", file=sys.stderr)
    finally:
        for server in started.values():
            server.stop()
    return out


def pooled(rounds: list) -> dict:
    """One level's rounds as one measurement, plus each round's tokens/s and tokens per server CPU-second."""
    elapsed = sum(e for _, e, _ in rounds)
    s = summarize([r for results, _, _ in rounds for r in results], elapsed)
    s["cpu"] = sum(c for _, _, c in rounds) / elapsed
    s["round_tps"] = np.array([summarize(results, e)["tps"] for results, e, _ in rounds])
    s["round_cpu"] = np.array([c / e for _, e, c in rounds])
    return s


def ratio_text(a, b) -> str:
    """sum(a) / sum(b) over paired rounds, its 95% bootstrap interval and each round's own ratio."""
    low, high = bootstrap_ratio(a, np.maximum(b, 1e-9))
    each = ", ".join(f"{x / max(y, 1e-9):.1f}" for x, y in zip(a, b))
    return f"{a.sum() / max(b.sum(), 1e-9):.1f}x [{low:.1f}, {high:.1f}] (rounds: {each})"


def probe_health(url: str, seconds: float) -> None:
    """Print one JSON line per /health probe (ok, seconds) every 0.1 s: run as its own process, so the
    figures are the server's and not the load generator's own event loop."""
    end = time.perf_counter() + seconds
    with httpx.Client(base_url=url, timeout=10) as http:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                ok = http.get("/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            print(json.dumps([ok, time.perf_counter() - t0]), flush=True)
            time.sleep(0.1)


async def overload(url: str, concurrency: int, seconds: float, max_tokens: int) -> tuple[dict, dict]:
    prober = subprocess.Popen([sys.executable, __file__, "--probe", url, "--duration", str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    results, elapsed = await closed_loop(url, concurrency, seconds, max_tokens)
    probes = [json.loads(line) for line in prober.communicate(timeout=60)[0].splitlines()]
    health = {"probes": len(probes), "failed": sum(not ok for ok, _ in probes),
              "p50_ms": 1000 * float(np.percentile([t for _, t in probes], 50)),
              "max_ms": 1000 * max(t for _, t in probes)}
    return summarize(results, elapsed), {**health, "results": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", nargs="?", help="run directory (default: train a quick default-size transformer)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per concurrency level and server")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds the duration is split into")
    p.add_argument("--levels", default="1,4,16,64")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--overload-concurrency", type=int, default=256)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--probe", metavar="URL", help=argparse.SUPPRESS)  # internal: the /health prober process
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per server (1 suits a shared CPU: more threads spin-wait when oversubscribed)")
    args = p.parse_args()
    if args.probe:
        return probe_health(args.probe, args.duration)
    levels = [int(x) for x in args.levels.split(",")]
    run = args.run or quick_run(args.train_steps)
    common = ["--max-queue", "1024", "--max-queue-ms", "600000", "--cache-size", "0", "--threads", str(args.threads)]
    print(f"run: {run}; {args.duration:g} s per level; max_tokens {args.max_tokens}; server torch threads "
          f"{args.threads}; cpu cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    batched_label, single_label = f"--max-batch {args.max_batch}", "--max-batch 1"
    measured = interleaved_levels(run, {batched_label: ["--max-batch", str(args.max_batch), *common],
                                        single_label: ["--max-batch", "1", *common]},
                                  levels, args.rounds, args.duration, args.max_tokens)
    tables = {label: {c: pooled(rounds) for c, rounds in per_level.items()} for label, per_level in measured.items()}
    rows = []
    for label, table in tables.items():
        for c, s in table.items():
            spread = f"{np.min(s['round_tps']):.0f}-{np.max(s['round_tps']):.0f}" if args.rounds > 1 else ""
            rows.append([label, c, f"{s['rps']:.2f}", f"{s['tps']:.0f}", spread, f"{s['cpu']:.2f}",
                         f"{s['tps'] / s['cpu']:.0f}" if s["cpu"] > 0 else "-", f"{s['p50'] * 1000:.0f}",
                         f"{s['p99'] * 1000:.0f}", f"{s['ttft50'] * 1000:.0f}", f"{s['ttft99'] * 1000:.0f}",
                         " ".join(f"{k}:{v}" for k, v in sorted(s["statuses"].items()))])
    print_table(f"seqlab serve, {args.duration:g} s per level in {args.rounds} interleaved round(s), streaming, "
                f"max_tokens {args.max_tokens}",
                ["server", "concurrency", "req/s", "tokens/s", "tokens/s by round", "server CPU cores",
                 "tokens/CPU-s", "p50 ms", "p99 ms", "TTFT p50 ms", "TTFT p99 ms", "replies by status"], rows)
    for c in levels:
        b, u = tables[batched_label][c], tables[single_label][c]
        per_cpu = ratio_text(b["round_tps"] / np.maximum(b["round_cpu"], 1e-9),
                             u["round_tps"] / np.maximum(u["round_cpu"], 1e-9))
        target = " (target >= 4x)" if c == 16 else ""
        print(f"\nthroughput ratio at concurrency {c} (batched / --max-batch 1): "
              f"{ratio_text(b['round_tps'], u['round_tps'])}{target}; per server CPU-second: {per_cpu}")
    print(f"(95% bootstrap over {args.rounds} interleaved rounds; load average now {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores)")

    server = Server(run, "--max-batch", str(args.max_batch), "--max-queue", "32", "--max-queue-ms", "250",
                    "--cache-size", "0", "--threads", str(args.threads))
    try:
        stats, health = asyncio.run(overload(server.url, args.overload_concurrency, args.duration, args.max_tokens))
        alive = server.proc.poll() is None
    finally:
        server.stop()
    results = health.pop("results")
    bad = [r for r in results if isinstance(r["status"], int) and r["status"] >= 500 and r["status"] != 503]
    cut = [r for r in results if r["status"] == 200 and not r["complete"]]
    other = [r for r in results if not isinstance(r["status"], int)]
    print()
    print_table(f"overload: {args.overload_concurrency} clients, --max-queue 32, --max-queue-ms 250",
                ["replies by status", "completed req/s", "tokens/s", "/health probes", "failed", "p50 ms", "max ms"],
                [[" ".join(f"{k}:{v}" for k, v in sorted(stats["statuses"].items())), f"{stats['rps']:.1f}",
                  f"{stats['tps']:.0f}", health["probes"], health["failed"], f"{health['p50_ms']:.1f}",
                  f"{health['max_ms']:.1f}"]])
    verdict = (alive and not bad and not cut and not other and health["failed"] == 0
               and any(r["status"] in (429, 503) for r in results))
    print(f"\noverload verdict: {'PASS' if verdict else 'FAIL'} (server alive: {alive}; 5xx other than 503: "
          f"{len(bad)}; accepted but cut: {len(cut)}; transport errors: {len(other)}; "
          f"/health failures: {health['failed']})")


if __name__ == "__main__":
    main()
