"""Count what the daemon does, in a Prometheus registry of its own, and track what is up.

One ``Metrics`` per daemon, built by the composition root and handed to the
parts that count (worker, sender, IMAP pollers, SLA alarms). Figures that live
in the database (tickets by status, outbox by state) are read when scraped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    imap_state: dict[str, str] = field(default_factory=dict)  # mailbox -> "connected" or why not

    def __post_init__(self) -> None:
        r = self.registry
        self.mails = Counter(
            "mailgate_mails_received",
            "Mails taken in, by source (smtp, lmtp, imap, pipe) and outcome",
            ["source", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "mailgate_processing_seconds",
            "Seconds from a mail's claim to its commit",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.deliveries = Counter(
            "mailgate_deliveries",
            "Outbox delivery attempts, by result (sent, retried, dead)",
            ["result"],
            registry=r,
        )
        self.imap_reconnects = Counter(
            "mailgate_imap_reconnects", "IMAP sessions lost", ["mailbox"], registry=r
        )
        self.sla_alerts = Counter(
            "mailgate_sla_alerts", "SLA warnings and breaches sent", ["alert"], registry=r
        )
        self.tickets = Gauge("mailgate_tickets", "Tickets by status", ["status"], registry=r)
        self.outbox = Gauge("mailgate_outbox", "Outbox mails by state", ["state"], registry=r)

    def mail(self, source: str, outcome: str, seconds: float | None = None) -> None:
        self.mails.labels(source=_source(source), outcome=outcome).inc()
        if seconds is not None:
            self.latency.observe(seconds)

    def imap(self, mailbox: str, state: str) -> None:
        if state != "connected" and self.imap_state.get(mailbox) == "connected":
            self.imap_reconnects.labels(mailbox=mailbox).inc()
        self.imap_state[mailbox] = state


def _source(source: str) -> str:
    """The kind of source: "imap:support" counts as imap."""
    return source.split(":", 1)[0] or "unknown"
