"""The hot path's statements, run on the driver's own cursor.

The repositories build their statements with SQLAlchemy Core, once, at import: one
dialect-neutral text each, read as SQL. Executing one through ``Connection.execute``
costs about ten times the SQL itself on the worker's path (the statement's cache key,
the execution context, parameter and result machinery: 1.7 ms of CPU a mail against
0.3 ms in SQLite). ``run`` compiles a statement that runs a second time (one built
once, at import) with SQLAlchemy's own compiler, once per dialect and set of parameter
names (and length of each ``IN`` list), and runs it on the DBAPI cursor of the same
connection, inside the same transaction, with the same
bind and result processing (``UTCDateTime``, SQLite's datetimes), the Python-side
defaults of the columns an insert leaves out, the same exceptions (wrapped as
SQLAlchemy's, the connection invalidated on a disconnect) and the same
``before_cursor_execute`` event for listeners. What it cannot run the same way (a
default computed by a function, no transaction open, an async driver) it hands to
``Connection.execute``. See docs/decisions/0022-driver-statements.md.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, Update

Params = Mapping[str, Any]


class Rows:
    """A statement's rows (tuples with the columns' names as attributes) and row count;
    the parts of SQLAlchemy's ``Result`` that the repositories use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement compiled for one dialect and shape of parameters."""

    compiled: SQLCompiler
    sql: str
    order: tuple[str, ...] | None  # the parameters' order (positional styles); None: named
    binds: Mapping[str, Callable[[Any], Any]]  # name -> bind processor
    expansion: Mapping[str, list[str]]  # an IN list's name -> the names of its elements
    # the values of the parameters ``params`` leave out: the statement's own (x == 'pending'),
    # the scalar defaults of the columns an insert or update leaves out
    defaults: Mapping[str, Any]


class _Statement:
    """What the driver path knows of one Core statement: its plans and row classes."""

    __slots__ = ("plans", "rows")

    def __init__(self) -> None:
        self.plans: dict[tuple[Any, ...], _Plan | None] = {}
        self.rows: dict[tuple[str, int], tuple[Any, tuple[Any, ...]]] = {}

    def plan(self, core: ClauseElement, dialect: Dialect, params: Params) -> _Plan | None:
        """The compiled form for ``params``' names (and ``IN`` lists' lengths); None when
        the statement must go through ``Connection.execute``."""
        lengths = tuple((k, len(v)) for k, v in params.items() if isinstance(v, list | tuple))
        key = (dialect.name, tuple(params), lengths)
        try:
            return self.plans[key]
        except KeyError:
            pass
        found = self.plans[key] = _compile(core, dialect, params, lengths)
        return found

    def row_of(
        self, plan: _Plan, dialect: Dialect, description: Sequence[Any]
    ) -> tuple[Any, tuple[Any, ...]]:
        """The row class and result processors of ``plan``'s rows."""
        key = (plan.sql, len(description))
        found = self.rows.get(key)
        if found is None:
            columns = plan.compiled._result_columns
            if len(columns) == len(description):
                names = [c.keyname for c in columns]
                processors = tuple(
                    c.type._cached_result_processor(dialect, d[1])
                    for c, d in zip(columns, description, strict=True)
                )
            else:  # textual columns: as the driver returns them
                names = [d[0] for d in description]
                processors = (None,) * len(description)
            row = collections.namedtuple("Row", names, rename=True)  # type: ignore[misc]
            found = self.rows[key] = (row, processors)
        return found


def _compile(
    core: ClauseElement, dialect: Dialect, params: Params, lengths: tuple[tuple[str, int], ...]
) -> _Plan | None:
    dml = isinstance(core, Insert | Update)
    compiled = core.compile(dialect=dialect, column_keys=list(params) if dml else None)
    assert isinstance(compiled, SQLCompiler)
    defaults: dict[str, Any] = {}
    prefetch = [(c, c.default) for c in compiled.insert_prefetch]
    prefetch += [(c, c.onupdate) for c in compiled.update_prefetch]
    for column, default in prefetch:
        if default is None or not default.is_scalar:
            return None  # computed by a function at execution: SQLAlchemy's to do
        defaults[column.key] = default.arg  # type: ignore[attr-defined]
    for bind, name in compiled.bind_names.items():  # the statement's own: x == 'pending'
        if name in params or name in defaults or bind.required:
            continue
        if bind.callable is not None:
            return None
        defaults[name] = bind.value
    # Tuple types' lists of processors do not occur in these statements.
    binds: dict[str, Any] = dict(compiled._bind_processors)
    expansion: dict[str, list[str]] = {}
    if compiled.post_compile_params or compiled.literal_execute_params:  # IN lists
        sample = {**defaults, **params}
        state = compiled.construct_expanded_state(sample)
        sql, order = state.statement, state.positiontup
        # the elements' processors beside the other parameters' (SQLAlchemy merges them too)
        binds.update(state.processors)
        expansion.update(state.parameter_expansion)
    else:
        sql, order = compiled.string, compiled.positiontup
    return _Plan(
        compiled,
        sql,
        tuple(order) if order is not None else None,
        binds,
        expansion,
        defaults,
    )


# id of a statement run before -> what the driver path knows of it; an entry goes with
# its statement (``weakref.finalize``).
_KNOWN: dict[int, _Statement] = {}


def run(
    conn: Connection, stmt: ClauseElement, params: Params | Sequence[Params] | None = None
) -> Rows:
    """Execute ``stmt`` in ``conn``'s transaction; a list of parameter sets runs it once
    for each (``executemany``, no rows returned). A statement's first run goes through
    ``Connection.execute``; from its second on (it was built once, to be run again) it
    runs on the driver. A statement built for one run therefore costs what it always did."""
    many = isinstance(params, list)
    if many and not params:
        return Rows([], 0)  # no rows to write (SQLAlchemy would run it once, bare)
    known = _KNOWN.get(id(stmt))
    dialect = conn.dialect
    # The shell's async engines adapt their drivers through greenlets: theirs stays theirs.
    if known is None or dialect.is_async or not conn.in_transaction():
        if known is None:
            _KNOWN[id(stmt)] = _Statement()
            weakref.finalize(stmt, _KNOWN.pop, id(stmt), None)
        return _through_sqlalchemy(conn, stmt, params)
    first: Params = params[0] if many else (params or {})  # type: ignore[index,assignment]
    plan = known.plan(stmt, dialect, first)
    if plan is None:
        return _through_sqlalchemy(conn, stmt, params)
    sets: Sequence[Params] = params if many else [first]  # type: ignore[assignment]
    bound = [_bind(plan, p) for p in sets]
    description, fetched, rowcount = _on_cursor(conn, plan.sql, bound if many else bound[0], many)
    if description is None:
        return Rows([], rowcount)
    row, processors = known.row_of(plan, dialect, description)
    if any(processors):
        rows = [
            row._make([p(v) if p else v for p, v in zip(processors, r, strict=True)])
            for r in fetched
        ]
    else:
        rows = [row._make(r) for r in fetched]
    return Rows(rows, rowcount)


def plain(conn: Connection, sql: str) -> None:
    """``sql``, a statement without parameters or rows (``SAVEPOINT x``), on the driver's
    cursor as ``run`` runs one."""
    _on_cursor(conn, sql, (), False)


def _on_cursor(conn: Connection, sql: str, args: Any, many: bool) -> tuple[Any, Sequence[Any], int]:
    """``sql`` executed on a cursor of ``conn``'s DBAPI connection: the description (None:
    no rows), the rows, the row count."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        listeners = conn.dispatch.before_cursor_execute
        if listeners:  # the engine's other events (connect, begin) are not for us
            listeners(conn, cursor, sql, args, None, many)
        if many and conn.dialect.name == "postgresql" and isinstance(args[0], dict):
            # psycopg's executemany opens a pipeline for the rows: one statement costs less
            # (one row: 84 against 49 µs of CPU; four: 107 against 50)
            together = sql if len(args) == 1 else _rows_in_one(sql, len(args))
            if together is not None:
                cursor.execute(together, args[0] if len(args) == 1 else _numbered(args))
                return None, [], cursor.rowcount
        if many:
            cursor.executemany(sql, args)
            return None, [], cursor.rowcount
        cursor.execute(sql, args)
        description = cursor.description
        return description, (cursor.fetchall() if description else []), cursor.rowcount
    except conn.dialect.loaded_dbapi.Error as exc:
        # Wrapped as SQLAlchemy wraps it (and the connection invalidated on a disconnect),
        # so that ``is_temporary`` and the callers' handlers see what they always see.
        conn._handle_dbapi_exception(exc, sql, args, cursor, None)
        raise  # not reached: the call above raises
    finally:
        with contextlib.suppress(Exception):  # after an invalidation the cursor is gone
            cursor.close()


_NAMED = re.compile(r"%\((\w+)\)s")
# an INSERT of one row; a RETURNING clause (its rows are not read: ``run`` returns none for
# a list of parameter sets) is left out of the statement of many rows
_ONE_ROW = re.compile(r"(INSERT INTO .+? VALUES )(\([^;]*?\))(?: RETURNING [\w., ]+)?", re.DOTALL)
MANY_VALUES = 64  # rows a multi-row INSERT takes at most; more go through executemany


@functools.lru_cache(maxsize=256)
def _rows_in_one(sql: str, count: int) -> str | None:
    """``sql``, an ``INSERT … VALUES (…)`` of one row with named parameters, as one
    statement of ``count`` rows (the n-th row's parameters named ``<name>__<n>``), without
    its ``RETURNING``; None for any other statement (``ON CONFLICT``, ``SELECT``, an
    ``UPDATE``) or too many rows."""
    found = _ONE_ROW.fullmatch(sql)
    if found is None or count > MANY_VALUES or ") " in found.group(2).rstrip(")"):
        return None
    head, row = found.groups()
    rows = (_NAMED.sub(lambda m, n=n: f"%({m.group(1)}__{n})s", row) for n in range(count))
    return head + ", ".join(rows)


def _numbered(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The parameters of ``rows`` for ``_rows_in_one``'s statement: the n-th row's
    ``<name>__<n>``."""
    return {f"{k}__{n}": v for n, row in enumerate(rows) for k, v in row.items()}


def _bind(plan: _Plan, params: Params) -> Any:
    """``params`` as the driver takes them: processed, expanded, in order."""
    values = {**plan.defaults, **params} if plan.defaults else dict(params)
    for name, names in plan.expansion.items():
        values.update(zip(names, values.pop(name), strict=True))
    for name, process in plan.binds.items():
        if name in values:
            values[name] = process(values[name])
    if plan.order is None:
        return values
    return tuple(values[name] for name in plan.order)


def _through_sqlalchemy(
    conn: Connection, stmt: ClauseElement, params: Params | Sequence[Params] | None
) -> Rows:
    result = conn.execute(stmt, params)  # type: ignore[call-overload]
    rows = list(result) if result.returns_rows else []
    return Rows(rows, result.rowcount)
