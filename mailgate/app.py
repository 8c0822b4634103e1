"""The composition root: every part built from the configuration and wired once.

The parts: the database engines and the schema check, the secret and the token codec,
the templates, the spool, the ticket application, the worker, the sender and the timers.
Every command builds one ``App``; ``daemon`` runs it with the listeners and pollers.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import holidays
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.clock import Clock, SystemClock
from mailgate.config import ENV_SECRET, Config
from mailgate.core.address import AddressPolicy, QueueAddresses
from mailgate.core.calendar import BusinessCalendar
from mailgate.core.tokens import TokenCodec, secret_check
from mailgate.errors import ConfigError, StorageUnavailable
from mailgate.intake.spool import Spool
from mailgate.ops.leader import Leadership
from mailgate.ops.metrics import Metrics
from mailgate.outbound.notifier import Notifier
from mailgate.outbound.render import Templates
from mailgate.outbound.transport import transport_for
from mailgate.runners.parsing import Parsers
from mailgate.runners.processes import WorkerProcess
from mailgate.runners.sender import Sender
from mailgate.runners.timers import Scheduler
from mailgate.runners.worker import Processor
from mailgate.store.blobs import blob_stores
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

if TYPE_CHECKING:
    from mailgate.intake.listeners import Listeners

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
    # What the daemon runs as its worker: the processor itself, or on PostgreSQL worker
    # processes of their own (``[worker] processes``), started at their first round.
    workers: list[Processor | WorkerProcess] = field(default_factory=list)
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
        for worker in self.workers:
            if isinstance(worker, WorkerProcess):
                worker.reload()
        log.info("templates.reloaded")

    async def close(self) -> None:
        await asyncio.gather(*(worker.close() for worker in self.workers))
        await self.spool.close()
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


async def _installation(
    engine: AsyncEngine, check: str, clock: Clock, adopt: bool
) -> tuple[str, str | None]:
    """The installation's id and secret fingerprint: read (a command that only reads never
    waits for the write lock), recorded on first use or when ``adopt`` says so."""
    with storage_errors("installation id"):
        async with session(engine) as s:
            known = await Repo(s).installation()
        if known is not None and known[1] is not None and not adopt:
            return known
        async with session(engine, write=True) as s:
            return await Repo(s).record_installation(
                uuid.uuid4().hex, check, clock.now(), adopt=adopt
            )


def _other_secret(config: Config) -> str:
    """Why a command with another token secret is refused, and what to do."""
    source = (
        f"{ENV_SECRET} (set in this environment)"
        if config.tokens.secret is not None
        else f"{config.secret_file} ({ENV_SECRET} is not set)"
    )
    return (
        f"[tokens]: the token secret from {source} is not the one this database's tickets "
        f"were made with: replies to them would open new tickets. Use the same secret "
        f"(set or unset {ENV_SECRET} as when the tickets were made), or run `mailgate init "
        "--adopt-secret` to make this one the secret from now on (tokens in mails already "
        "sent stop matching)."
    )


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


async def build_app(
    config: Config, clock: Clock | None = None, *, adopt_secret: bool = False
) -> App:
    """Connect, create what is missing (schema, secret, installation id) and wire the parts.

    The token secret must be the one the database's tickets were made with (a mismatch is
    refused: every reply would open a new ticket), unless ``adopt_secret`` records it as
    the new one."""
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
        check = secret_check(secret)
        installation, recorded = await _installation(engine, check, clock, adopt_secret)
        if recorded != check:
            raise ConfigError([_other_secret(config)])
        templates = Templates(config.outbound.template_dir)
        templates.check()
    except BaseException:
        await engine.dispose()
        raise
    codec = TokenCodec(secret, installation, config.tokens.prefix)
    return _wire(config, clock, engine, codec, templates)


def _wire(
    config: Config, clock: Clock, engine: AsyncEngine, codec: TokenCodec, templates: Templates
) -> App:
    policy = address_policy(config)
    wake, outbox_wake = asyncio.Event(), asyncio.Event()
    blocking = _blocking(config, engine)
    intake = create_sqlite_sync_engine(engine, config.database.busy_timeout)
    blocking.watch(intake)
    spool = Spool(
        engine,
        clock,
        on_stored=lambda _id: wake.set(),
        sync_engine=intake,
        busy_timeout=config.database.busy_timeout,
        statement_timeout=config.database.statement_timeout,
    )
    metrics = Metrics()
    notifier = Notifier(config=config, templates=templates, codec=codec, policy=policy)
    desk = Desk(
        workflow=config.workflow,
        calendar=business_calendar(config, clock.now().year),
        notifier=notifier,
        sla=config.sla.policy(),
        metrics=metrics,
        field_names=frozenset(f.name for q in config.queues for f in q.fields),
    )
    raw, attachments = blob_stores(
        config.spool_dir,
        config.attachment_dir,
        in_database=config.general.blobs == "database",
        smallest=config.general.files_from,
    )
    processor = Processor(
        blocking=blocking,
        raw=raw,
        attachments=attachments,
        preparer=Preparer(codec, policy, config.intake, templates.subject_prefixes()),
        parsers=_parsers(config, blocking),
        applier=_applier(config, desk, notifier, policy),
        worker=config.worker,
        clock=clock,
        intake_busy=spool.busy,
        on_outbox=outbox_wake.set,
        metrics=metrics,
    )
    workers = _workers(config, processor, blocking, metrics, outbox_wake.set)
    sender = Sender(
        worker_busy=lambda: any(w.busy() for w in workers),
        blocking=blocking,
        transport=transport_for(config.outbound.relay, config.outbound.maildir),
        config=config.outbound,
        clock=clock,
        metrics=metrics,
    )
    scheduler = Scheduler(blocking=blocking, desk=desk, clock=clock, on_outbox=outbox_wake.set)
    leadership = Leadership(config.database.url, config.general.data_dir / "locks")
    return App(
        config, engine, codec, policy, spool, processor, clock, wake, sender, templates,
        outbox_wake, desk, scheduler, leadership, metrics, notifier, blocking, workers,
    )  # fmt: skip


def _blocking(config: Config, engine: AsyncEngine) -> Blocking:
    database = config.database
    return Blocking(
        engine,
        create_blocking_engine(
            engine,
            busy_timeout=database.busy_timeout,
            statement_timeout=database.statement_timeout,
            writers=config.worker.lanes + 1,  # and the sender
        ),
    )


def _workers(
    config: Config,
    processor: Processor,
    blocking: Blocking,
    metrics: Metrics,
    on_outbox: Callable[[], None],
) -> list[Processor | WorkerProcess]:
    """The daemon's worker: ``processor`` itself, or on a database of many writers
    (PostgreSQL) ``[worker] processes`` worker processes, each claiming its own batches."""
    count = config.worker.processes
    if blocking.single_writer or count == 0:
        return [processor]
    return [WorkerProcess(config, i, metrics, on_outbox) for i in range(count)]


def _parsers(config: Config, blocking: Blocking) -> Parsers:
    """SQLite's parsing processes (PostgreSQL runs whole workers in processes: none)."""
    count = config.worker.processes if blocking.single_writer else 0
    return Parsers(count, config.general.log_level, config.general.log_format)


def _applier(config: Config, desk: Desk, notifier: Notifier, policy: AddressPolicy) -> Applier:
    return Applier(
        desk=desk,
        notifier=notifier,
        policy=policy,
        queues={q.name: q for q in config.queues},
        intake=config.intake,
        submission=config.submission,
        suppression_days=config.outbound.suppress_after_bounce_days,
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


def queue_envelope(config: Config, queue: str | None) -> tuple[str, ...]:
    """The envelope recipient that files a source's mail in ``queue`` (none: by address)."""
    for candidate in config.queues:
        if candidate.name == queue:
            return (candidate.addresses[0],)
    return ()
