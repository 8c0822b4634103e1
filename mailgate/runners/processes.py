"""The worker in processes of its own (PostgreSQL), so that it uses more than one core.

A worker applies mails in Python: parsing, routing, rendering, composing and the
statements' own code hold the interpreter's lock, and one process's worker is bound
by it while the database server and the second core wait (measured: the machine half
idle). On PostgreSQL, which takes many writers, the daemon therefore starts
``[worker] processes`` workers, each a process with its own connections, each
claiming a batch of the spool at a time as the workers of several instances do
(``SpoolRepo.claim_due``: by sender, so that none waits for another's hold on the caps,
a thread's mails in their order); the claim (``FOR UPDATE SKIP LOCKED``) and the caps'
locks keep two of them, like two instances, from ever applying a mail twice.

``WorkerProcess`` is the daemon's side of one: a ``Runner`` like the in-process
``Processor``, whose rounds it hands to its process over a pipe. The process is
started (``spawn``) at its first round and again after it died; it answers each round
with the outcomes, the metrics it counted (replayed into the daemon's) and whether
storage failed. It ignores SIGTERM and SIGINT, which a service manager or a terminal
sends to the whole group: it finishes the round it is in and stops when the daemon
tells it to, or when the daemon is gone (the pipe closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import structlog

from mailgate.config import Config
from mailgate.errors import MailgateError, StorageUnavailable
from mailgate.ops.metrics import Metrics
from mailgate.runners.loop import Round
from mailgate.runners.worker import NOTIFYING, worker_round
from mailgate.tickets.arrival import Outcome

log = structlog.get_logger("mailgate.runners.processes")
STOP_WAIT = 60.0  # seconds a process may take to finish its round and close


class WorkerProcess:
    """One worker process, seen from the daemon: its rounds run there."""

    name = "worker"

    def __init__(
        self,
        config: Config,
        number: int,
        metrics: Metrics,
        on_outbox: Callable[[], None],
    ) -> None:
        self.config = config
        self.number = number  # its place among the instance's processes, for the logs
        self.metrics = metrics
        self.on_outbox = on_outbox
        self._process: Any = None  # multiprocessing's SpawnProcess
        self._conn: Connection | None = None
        self._working = False
        # One question on the pipe at a time: two readers of one pipe would each get part
        # of an answer. The answer of an asker that was cancelled is read before the next.
        self._asking = asyncio.Lock()
        self._answer: asyncio.Future[tuple[Any, ...]] | None = None

    async def run_due(self, limit: int = 256) -> list[Outcome]:
        """The process applies what is due, up to ``limit``; its outcomes."""
        return self._outcomes(await self._ask(("due", limit)))

    def _outcomes(self, reply: tuple[Any, ...]) -> list[Outcome]:
        """A round's answer: its outcomes, its counts replayed into the daemon's metrics."""
        kind = reply[0]
        if kind == "unavailable":
            raise StorageUnavailable(reply[1])
        if kind == "bug":  # as a bug in the daemon's own worker: the daemon stops
            raise RuntimeError(f"worker process {self.number} failed:\n{reply[1]}")
        outcomes: list[Outcome] = reply[1]
        for source, outcome, seconds in reply[2]:
            self.metrics.mail(source, outcome, seconds)
        if any(o.action in NOTIFYING for o in outcomes):
            self.on_outbox()
        return outcomes

    async def round(self, *, failing: bool, stop: asyncio.Event) -> Round:
        done, self._working = await worker_round(self.run_due, failing=failing)
        return done

    def busy(self) -> bool:
        return self._working

    @property
    def pid(self) -> int | None:
        """The process's id while it runs."""
        return self._process.pid if self._process is not None else None

    def reload(self) -> None:
        """SIGHUP: the process loads the templates again before its next round."""
        if self._conn is not None:
            with contextlib.suppress(OSError):  # it died: its successor loads them fresh
                self._conn.send(("reload",))

    async def close(self) -> None:
        """Let the process finish its round and stop; ended by force after ``STOP_WAIT``."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is None or conn is None:
            return
        with contextlib.suppress(OSError):  # it died already
            conn.send(("stop",))
        await asyncio.to_thread(process.join, STOP_WAIT)
        if process.is_alive():
            log.warning("worker.process_killed", process=self.number, pid=process.pid)
            process.kill()
            await asyncio.to_thread(process.join)
        if self._answer is not None:  # the answer of a cancelled round: read before closing
            with contextlib.suppress(EOFError, OSError):
                await self._answer
            self._answer = None
        conn.close()

    async def _ask(self, message: tuple[Any, ...]) -> tuple[Any, ...]:
        async with self._asking:
            if self._answer is not None:  # its asker was cancelled; its mails are applied
                earlier, self._answer = self._answer, None
                with contextlib.suppress(EOFError, OSError):  # the send below finds out
                    self._outcomes(await earlier)
            if self._conn is None:
                await self._start()
            conn = self._conn
            assert conn is not None
            try:
                conn.send(message)
                self._answer = asyncio.ensure_future(asyncio.to_thread(conn.recv))
                reply = await asyncio.shield(self._answer)  # cancelled: the answer stays due
            except (EOFError, OSError) as exc:
                process, self._process, self._conn = self._process, None, None
                code = process.exitcode if process is not None else None
                log.error("worker.process_died", process=self.number, exitcode=code)
                conn.close()
                # Its transaction died with it: its mails are pending again, for its successor.
                raise StorageUnavailable(f"worker process {self.number} died ({code})") from exc
            finally:
                if self._answer is not None and self._answer.done():
                    self._answer = None
            return reply

    async def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded event loop
        ours, theirs = context.Pipe()
        general = self.config.general
        process = context.Process(
            target=serve,
            args=(theirs, self.config, self.number, general.log_level, general.log_format),
            name=f"mailgate-worker-{self.number}",
            daemon=True,
        )
        process.start()
        theirs.close()
        try:
            ready = await asyncio.to_thread(ours.recv)
        except EOFError:
            ready = ("failed", f"exited ({process.exitcode}) before it was ready")
        if ready[0] != "ready":
            ours.close()
            await asyncio.to_thread(process.join, STOP_WAIT)
            raise StorageUnavailable(f"worker process {self.number}: {ready[1]}")
        log.info("worker.process_started", process=self.number, pid=process.pid)
        self._process, self._conn = process, ours


# --- in the worker process -----------------------------------------------------------------


@dataclass
class _Tally(Metrics):
    """The process's metrics: what it counts goes back to the daemon with each round."""

    counted: list[tuple[str, str, float | None]] = field(default_factory=list)

    def mail(self, source: str, outcome: str, seconds: float | None = None) -> None:
        self.counted.append((source, outcome, seconds))


def serve(conn: Connection, config: Config, number: int, level: str, fmt: str) -> None:
    """The worker process: rounds on the daemon's word until it says stop or is gone."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # the daemon stops us, after our round
    from mailgate.log import configure

    configure(level, fmt)
    structlog.contextvars.bind_contextvars(worker=number)
    asyncio.run(_serve(conn, config))


async def _serve(conn: Connection, config: Config) -> None:
    from mailgate.app import build_app

    try:
        app = await build_app(config)
    except Exception as exc:  # the daemon says why, and tries again later
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    tally = _Tally()
    app.processor.metrics = tally
    try:
        conn.send(("ready",))
        while True:
            try:
                message = await asyncio.to_thread(conn.recv)
            except (EOFError, OSError):  # the daemon is gone
                break
            if message[0] == "stop":
                break
            if message[0] == "reload":
                app.reload_templates()
                continue
            try:
                outcomes = await app.processor.run_due(message[1])
            except MailgateError as exc:
                conn.send(("unavailable", str(exc)))
                continue
            except Exception:
                conn.send(("bug", traceback.format_exc()))
                break
            conn.send(("done", outcomes, tally.counted))
            tally.counted = []
    finally:
        await app.close()
