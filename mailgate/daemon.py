"""The daemon: runners, listeners, pollers and the HTTP endpoint, until a signal stops them.

``mailgate run`` builds the parts (``app``) and runs them here: the worker and the sender
on every instance, the timers and retention on the leading one, each IMAP mailbox polled
by one instance; SIGHUP reloads the templates; SIGTERM stops the listeners first.
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from mailgate.app import App, queue_envelope
from mailgate.config import ImapConfig
from mailgate.intake.imap import ImapPoller
from mailgate.intake.listeners import Listeners, start_listeners
from mailgate.ops.http import MonitorServer, health_of
from mailgate.runners.loop import Runner, run, wait_for_work
from mailgate.runners.processes import WorkerProcess
from mailgate.runners.retention import DAILY, Retention, purger_for
from mailgate.runners.worker import Processor
from mailgate.web.server import WebDesk

log = structlog.get_logger("mailgate.app")


GIL_SWITCH_INTERVAL = 0.0005  # seconds; see docs/decisions/0004-smtp-acknowledgement.md


# glibc's mallopt parameter M_MMAP_THRESHOLD, and the size from which it is set to apply.
_M_MMAP_THRESHOLD = -3
LARGE_ALLOCATION = 1 << 20


def return_large_frees() -> None:
    """Make every allocation of 1 MiB or more its own mapping, given back when freed.

    glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB), so
    after the first large mail every later one is carved from the heap and the memory
    stays with the daemon: 8 mails of 24 MB left it at 560 MB for good. A fixed threshold
    keeps the daemon near its working set. Elsewhere than glibc this does nothing.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION)


async def run_daemon(app: App, stop: asyncio.Event | None = None) -> None:
    """Listen and process until SIGTERM or SIGINT; mail stored earlier is processed first.

    Shutdown order: stop accepting and let SMTP/LMTP transactions in flight
    finish (``[smtp] shutdown_grace``), then let the worker finish its mail.
    """
    stop = stop or asyncio.Event()
    # The spool commits on its own thread while the event loop serves the clients; with
    # the default 5 ms GIL switch interval every commit waits that long for its turn.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    return_large_frees()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app.reload_templates)
    config = app.config
    log.info(
        "daemon.started",
        database=_safe_url(config.database.url),
        data_dir=str(config.general.data_dir),
        queues=[q.name for q in config.queues],
    )
    # The front ends first: a port that is taken stops us before a runner starts or this
    # instance leads anything.
    front = _Front()
    runners: _Runners | None = None
    try:
        await front.start(app, stop)
        runners = _Runners.start(app)
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait(
            {stopping, *runners.loops}, return_when=asyncio.FIRST_COMPLETED
        )
        stopping.cancel()
        for loop_task in done - {stopping}:
            loop_task.result()  # a loop died of a bug: its error stops us, the supervisor restarts
    finally:
        stop.set()
        log.info("daemon.stopping", grace=config.smtp.shutdown_grace)
        await front.close(config.smtp.shutdown_grace)
        if runners is not None:
            await runners.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("daemon.stopped")


@dataclass
class _Runners:
    """The worker and the sender on every instance; the timers and retention on the leader."""

    stopping: asyncio.Event
    loops: list[asyncio.Task[None]]
    workers: list[Processor | WorkerProcess]

    @classmethod
    def start(cls, app: App) -> _Runners:
        config, stop = app.config, asyncio.Event()
        app.processor.parsers.start()  # SQLite: ready before the first burst of mail
        # Each worker hears of stored mail (one wake-up each: a loop clears its own).
        wakes = [asyncio.Event() for _ in app.workers]
        loops = [
            asyncio.create_task(_fan_out(app.wake, wakes, stop)),
            *(
                asyncio.create_task(run(worker, stop, wake, config.worker.poll_interval))
                for worker, wake in zip(app.workers, wakes, strict=True)
            ),
            asyncio.create_task(
                run(app.sender, stop, app.outbox_wake, config.outbound.poll_interval)
            ),
        ]
        # Led by one instance at a time: each time this one leads, a fresh loop.
        led: dict[str, tuple[Runner, float]] = {"timers": (app.scheduler, app.scheduler.interval)}
        if config.purge_archived_after_days > 0:
            purger = purger_for(app)
            retention = Retention(purger, config.purge_archived_after_days, app.clock)
            led["retention"] = (retention, DAILY)
        loops += [
            asyncio.create_task(app.leadership.run(name, _led(runner, every), stop))
            for name, (runner, every) in led.items()
        ]
        return cls(stop, loops, app.workers)

    async def stop(self) -> None:
        """Let each loop finish its round and return; then the worker processes."""
        self.stopping.set()
        await asyncio.wait(self.loops)
        await asyncio.gather(*(worker.close() for worker in self.workers))


async def _fan_out(wake: asyncio.Event, wakes: list[asyncio.Event], stop: asyncio.Event) -> None:
    """Pass each wake-up (mail stored) on to every worker's loop, until ``stop``."""
    while not stop.is_set():
        await wait_for_work(stop, wake, 3600.0)
        wake.clear()
        for each in wakes:
            each.set()


@dataclass
class _Front:
    """What mail, monitoring and people come in by: the HTTP endpoint, the web desk, the
    listeners, the pollers."""

    monitor: MonitorServer | None = None
    desk: WebDesk | None = None
    listeners: Listeners | None = None
    pollers: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, app: App, stop: asyncio.Event) -> None:
        config = app.config
        if config.smtp.enabled or config.lmtp.enabled:
            self.listeners = app.listeners = await start_listeners(
                smtp=config.smtp,
                lmtp=config.lmtp,
                spool=app.spool,
                policy=app.policy,
                clock=app.clock,
            )
        if config.http.enabled:
            self.monitor = MonitorServer(health_of(app))
            await self.monitor.start(config.http.host, config.http.port)
        if config.web.enabled:
            self.desk = WebDesk(app)
            await self.desk.start(config.web.host, config.web.port)
        for mailbox in config.imap:
            # One instance polls a mailbox at a time; a fresh poller each time it leads.
            job = _poll(app, mailbox)
            self.pollers.append(
                asyncio.create_task(app.leadership.run(f"imap:{mailbox.name}", job, stop))
            )

    async def close(self, grace: float) -> None:
        """Stop the endpoint, the listeners (transactions in flight finish within ``grace``)
        and the pollers."""
        if self.monitor is not None:
            await self.monitor.close()
        if self.desk is not None:
            await self.desk.close()
        if self.listeners is not None:
            await self.listeners.close()
        if self.pollers:
            await asyncio.wait(self.pollers, timeout=grace + 5)


def _led(runner: Runner, every: float) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    """The loop of ``runner`` as a job to lead (``ops.leader``): until its stop is set."""

    async def job(stop: asyncio.Event) -> None:
        await run(runner, stop, asyncio.Event(), every)

    return job


def _poll(app: App, mailbox: ImapConfig) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    def state(value: str) -> None:
        app.metrics.imap(mailbox.name, value)

    async def job(stop: asyncio.Event) -> None:
        state("connecting")
        poller = ImapPoller(
            mailbox,
            spool=app.spool,
            engine=app.engine,
            clock=app.clock,
            envelope_to=queue_envelope(app.config, mailbox.queue),
            on_state=state,
        )
        try:
            await poller.run(stop)
        finally:
            state("standby (polled by another instance)")

    return job


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
