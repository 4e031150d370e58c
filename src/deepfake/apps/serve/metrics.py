"""Prometheus metrics (prometheus_client) of one service instance, in its own registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

JOB_SECONDS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class _JobGauges(Collector):
    """Jobs per status and ready workers, read from the job store at scrape time (never a stale copy)."""

    def __init__(self, counts: Callable[[], dict[str, int]], ready: Callable[[], int]) -> None:
        self.counts = counts
        self.ready = ready

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.counts()
        jobs = GaugeMetricFamily("deepfake_jobs", "Analyses in the job store by status", labels=["status"])
        for status, count in counts.items():
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily("deepfake_queue_depth", "Analyses waiting for a worker", value=counts.get("queued", 0))
        yield GaugeMetricFamily(
            "deepfake_workers_ready", "Worker processes with their models loaded", value=self.ready()
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deepfake_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.rejected = Counter(
            "deepfake_uploads_rejected", "Uploads refused, by reason", ["reason"], registry=self.registry
        )
        self.job_seconds = Histogram(
            "deepfake_job_duration_seconds",
            "Analysis run time (start to end of the last attempt)",
            ["status"],
            buckets=JOB_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.failures = Counter(
            "deepfake_job_failures", "Analyses that failed or were cut short, by kind", ["kind"], registry=self.registry
        )
        self.not_scored = Counter(
            "deepfake_videos_not_scored",
            "Analysed videos without a score, by status",
            ["status"],
            registry=self.registry,
        )
        self.ready = Gauge("deepfake_up", "1 while the service runs", registry=self.registry)
        self.ready.set(1)

    def watch(self, counts: Callable[[], dict[str, int]], ready: Callable[[], int]) -> None:
        self.registry.register(_JobGauges(counts, ready))

    def failure(self, kind: str) -> None:
        self.failures.labels(kind).inc()

    def finished(self, job: Any) -> None:
        if job.started and job.finished:
            self.job_seconds.labels(job.status).observe(max(0.0, job.finished - job.started))
        if job.status == "failed":
            kind = "timeout" if (job.error or "").startswith("timed out") else "error"
            if "attempts" in (job.error or ""):
                kind = "interrupted"
            if kind != "timeout":  # timeouts were counted when the supervisor failed the job
                self.failure(kind)
        elif job.record and job.record.get("status") != "ok":
            self.not_scored.labels(str(job.record["status"]).split(":", 1)[0]).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
