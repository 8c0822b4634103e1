"""The composition root: every part built from the configuration, and the daemon that runs them.

The parts: the database engines and the schema check, the token codec, the spool, the
worker, the sender, the timers, retention; ``run_daemon`` adds the listeners, the IMAP
pollers (each led by one instance), the HTTP endpoint, and stops them in order.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import signal
import sys
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.clock import Clock, SystemClock
from mailgate.config import Config, ImapConfig
from mailgate.core.address import AddressPolicy, QueueAddresses
from mailgate.core.calendar import BusinessCalendar
from mailgate.core.tokens import TokenCodec
from mailgate.errors import ConfigError, StorageUnavailable
from mailgate.intake.imap import ImapPoller
from mailgate.intake.listeners import Listeners, start_listeners
from mailgate.intake.spool import Spool
from mailgate.ops.http import Health, MonitorServer
from mailgate.ops.leader import Leadership
from mailgate.ops.metrics import Metrics
from mailgate.outbound.notifier import Notifier
from mailgate.outbound.render import Templates
from mailgate.outbound.transport import transport_for
from mailgate.runners.loop import Runner, run
from mailgate.runners.retention import DAILY, Retention, purger_for
from mailgate.runners.sender import Sender
from mailgate.runners.timers import Scheduler
from mailgate.runners.worker import Processor
from mailgate.store.blobs import BlobStore
from mailgate.store.db import (
    Blocking,
    create_blocking_engine,
    create_engine,
    create_sqlite_sync_engine,
    session,
    storage_errors,
)
from mailgate.store.files import private_dir
from mailgate.store.repos import Repo
from mailgate.store.schema import prepare_schema
from mailgate.tickets.effects import Desk
from mailgate.tickets.mail import Applier
from mailgate.tickets.prepare import Preparer

log = structlog.get_logger("mailgate.app")


@dataclass
class App:
    """Everything a command needs, built once and passed down."""

    config: Config
    engine: AsyncEngine
    codec: TokenCodec
    policy: AddressPolicy
    spool: Spool
    processor: Processor
    clock: Clock
    wake: asyncio.Event
    sender: Sender
    templates: Templates
    outbox_wake: asyncio.Event
    desk: Desk
    scheduler: Scheduler
    leadership: Leadership
    metrics: Metrics
    notifier: Notifier
    blocking: Blocking
    listeners: Listeners | None = None

    def reload_templates(self) -> None:
        """SIGHUP: load the notification templates again; keep the old ones if the new fail.

        Templates are the one part safe to change under a running daemon; changes to
        config.toml need a restart (its listeners, database and workflow are in use).
        """
        fresh = Templates(self.config.outbound.template_dir)
        try:
            fresh.check()
        except ConfigError as exc:
            log.error("templates.reload_failed", problems=exc.problems)
            return
        self.templates = fresh
        self.notifier.templates = fresh  # the one notifier the worker and the desk share
        log.info("templates.reloaded")

    async def close(self) -> None:
        await asyncio.to_thread(self.spool.close)
        await asyncio.to_thread(self.blocking.close)
        await self.engine.dispose()


def load_secret(config: Config) -> bytes:
    """The token secret: ``MAILGATE_SECRET``, else the data dir's secret file, made on first use."""
    if config.tokens.secret is not None:
        return config.tokens.secret
    path = config.secret_file
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageUnavailable(f"cannot read {path}: {exc.strerror}") from exc
    try:
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes().strip()
    except OSError as exc:
        raise StorageUnavailable(f"cannot create {path}: {exc.strerror}") from exc
    value = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as handle:
        handle.write(value + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    log.info("secret.generated", path=str(path))
    return value


def address_policy(config: Config) -> AddressPolicy:
    return AddressPolicy(
        queues=tuple(QueueAddresses(q.name, q.addresses) for q in config.queues),
        plus_addressing=config.addresses.plus_addressing,
        plus_separator=config.addresses.plus_separator,
        case_sensitive_local_part=config.addresses.case_sensitive_local_part,
        agent_domains=config.agents.domains,
        agent_addresses=config.agents.addresses,
        bounce_domains=bounce_domains(config),
    )


def bounce_domains(config: Config) -> tuple[str, ...]:
    """The domains our VERP bounce addresses use: the outbound domain, else the queues'."""
    if config.outbound.domain:
        return (config.outbound.domain.lower(),)
    return tuple(
        dict.fromkeys(a.rpartition("@")[2].lower() for q in config.queues for a in q.addresses)
    )


async def build_app(config: Config, clock: Clock | None = None) -> App:
    """Connect, create what is missing (schema, secret, installation id) and wire the parts."""
    clock = clock or SystemClock()
    db = config.database
    engine = create_engine(
        db.url,
        busy_timeout=db.busy_timeout,
        echo=db.echo,
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        statement_timeout=db.statement_timeout,
    )
    try:
        await prepare_schema(engine)
        secret = await asyncio.to_thread(load_secret, config)
        with storage_errors("installation id"):
            async with session(engine, write=True) as s:
                installation = await Repo(s).installation_id(uuid.uuid4().hex, clock.now())
    except BaseException:
        await engine.dispose()
        raise
    templates = Templates(config.outbound.template_dir)
    try:
        templates.check()
    except BaseException:
        await engine.dispose()
        raise
    codec = TokenCodec(secret, installation, config.tokens.prefix)
    policy = address_policy(config)
    wake = asyncio.Event()
    outbox_wake = asyncio.Event()
    in_database = config.general.blobs == "database"
    raw = None if in_database else BlobStore(config.spool_dir, ".eml")
    spool = Spool(
        engine,
        clock,
        on_stored=lambda _id: wake.set(),
        sync_engine=create_sqlite_sync_engine(engine, config.database.busy_timeout),
        busy_timeout=config.database.busy_timeout,
    )
    metrics = Metrics()
    notifier = Notifier(config=config, templates=templates, codec=codec, policy=policy)
    desk = Desk(
        workflow=config.workflow,
        calendar=business_calendar(config, clock.now().year),
        notifier=notifier,
        sla=config.sla.policy(),
        metrics=metrics,
    )
    blocking = Blocking(
        engine,
        create_blocking_engine(
            engine,
            busy_timeout=config.database.busy_timeout,
            statement_timeout=config.database.statement_timeout,
            writers=config.worker.lanes + 1,  # and the sender
        ),
    )
    processor = Processor(
        blocking=blocking,
        raw=raw,
        attachments=None if in_database else BlobStore(config.attachment_dir),
        preparer=Preparer(codec, policy, config.intake),
        applier=Applier(
            desk=desk,
            notifier=notifier,
            policy=policy,
            queues={q.name: q for q in config.queues},
            intake=config.intake,
            submission=config.submission,
            suppression_days=config.outbound.suppress_after_bounce_days,
        ),
        worker=config.worker,
        clock=clock,
        intake_busy=spool.busy,
        on_outbox=outbox_wake.set,
        metrics=metrics,
    )
    scheduler = Scheduler(blocking=blocking, desk=desk, clock=clock, on_outbox=outbox_wake.set)
    sender = Sender(
        worker_busy=processor.busy,
        blocking=blocking,
        transport=transport_for(config.outbound.relay, config.outbound.maildir),
        config=config.outbound,
        clock=clock,
        metrics=metrics,
    )
    return App(
        config,
        engine,
        codec,
        policy,
        spool,
        processor,
        clock,
        wake,
        sender,
        templates,
        outbox_wake,
        desk,
        scheduler,
        Leadership(config.database.url, config.general.data_dir / "locks"),
        metrics,
        notifier,
        blocking,
    )


def business_calendar(config: Config, year: int) -> BusinessCalendar:
    """The desk's calendar: zone, workdays, office hours, half days, and as closed days the
    public holidays of its country (``holidays``) from last year to ten years on, plus its
    own closed days."""
    cal = config.calendar
    names: dict[date, str] = {}
    if cal.holidays_country:
        found = holidays.country_holidays(
            cal.holidays_country,
            subdiv=cal.holidays_subdivision or None,
            years=range(year - 1, year + 11),
        )
        names.update({day: str(name) for day, name in found.items()})
    names.update(dict.fromkeys(cal.closed_days, "closed"))
    return BusinessCalendar(
        ZoneInfo(cal.timezone),
        frozenset(cal.workdays),
        frozenset(names),
        opens=cal.opens,
        closes=cal.closes,
        half_days=dict(cal.half_days),
        holiday_names=names,
    )


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
    listeners: Listeners | None = None
    monitor: MonitorServer | None = None
    worker_stop = asyncio.Event()
    worker = asyncio.create_task(
        run(app.processor, worker_stop, app.wake, config.worker.poll_interval)
    )
    sender = asyncio.create_task(
        run(app.sender, worker_stop, app.outbox_wake, config.outbound.poll_interval)
    )
    # Led by one instance at a time: each time this one leads, a fresh loop.
    led: dict[str, tuple[Runner, float]] = {"timers": (app.scheduler, app.scheduler.interval)}
    if config.purge_archived_after_days > 0:
        purger = purger_for(app.engine, config)
        led["retention"] = (Retention(purger, config.purge_archived_after_days, app.clock), DAILY)
    loops = [worker, sender] + [
        asyncio.create_task(app.leadership.run(name, _led(runner, every), worker_stop))
        for name, (runner, every) in led.items()
    ]
    pollers: list[asyncio.Task[None]] = []
    try:
        if config.http.enabled:
            monitor = MonitorServer(
                Health(
                    app.engine,
                    app.metrics,
                    app.clock,
                    tuple(m.name for m in config.imap),
                    listening=lambda: (
                        app.listeners is not None
                        or not (config.smtp.enabled or config.lmtp.enabled)
                    ),
                )
            )
            await monitor.start(config.http.host, config.http.port)
        if config.smtp.enabled or config.lmtp.enabled:
            listeners = await start_listeners(
                smtp=config.smtp,
                lmtp=config.lmtp,
                spool=app.spool,
                policy=app.policy,
                clock=app.clock,
            )
            app.listeners = listeners
        for mailbox in config.imap:
            # One instance polls a mailbox at a time; a fresh poller each time it leads.
            pollers.append(
                asyncio.create_task(
                    app.leadership.run(f"imap:{mailbox.name}", _poll(app, mailbox), stop)
                )
            )
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopping, *loops}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        for loop_task in done - {stopping}:
            loop_task.result()  # a loop died of a bug: its error stops us, the supervisor restarts
    finally:
        stop.set()
        if monitor is not None:
            await monitor.close()
        if listeners is not None:
            await listeners.close()
        if pollers:
            await asyncio.wait(pollers, timeout=config.smtp.shutdown_grace + 5)
        worker_stop.set()
        await asyncio.wait(loops)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("daemon.stopped")


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


def queue_envelope(config: Config, queue: str | None) -> tuple[str, ...]:
    """The envelope recipient that files a source's mail in ``queue`` (none: by address)."""
    for candidate in config.queues:
        if candidate.name == queue:
            return (candidate.addresses[0],)
    return ()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
