"""Prometheus metrics, one registry per app (so two servers in one process never share counts)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("seqlab_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.queue_depth = Gauge("seqlab_queue_depth", "requests waiting for the model", registry=r)
        self.active_rows = Gauge("seqlab_active_rows", "sequences being generated now", registry=r)
        self.batch_size = Histogram("seqlab_batch_size", "rows in each generation forward step",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.score_batch_size = Histogram("seqlab_score_batch_size", "requests in each scoring batch",
                                          buckets=BATCH_BUCKETS, registry=r)
        self.queue_seconds = Histogram("seqlab_queue_seconds", "time from arrival to the start of model work",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.ttft_seconds = Histogram("seqlab_time_to_first_token_seconds", "arrival to first generated token",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("seqlab_generated_tokens", "tokens generated", registry=r)
        self.cache_hits = Counter("seqlab_cache_hits", "deterministic answers served from the cache", registry=r)
        self.cache_misses = Counter("seqlab_cache_misses", "cacheable requests that had to run", registry=r)
        self.cache_entries = Gauge("seqlab_cache_entries", "answers held in the cache", registry=r)
        self.dropped = Counter("seqlab_dropped", "requests refused or dropped before running, by reason",
                               ["reason"], registry=r)
        self.worker_up = Gauge("seqlab_worker_up", "1 while the model worker is loaded and running", registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
