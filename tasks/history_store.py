"""The history store: every validated day, the files that brought them, and every revision.

SQLite through SQLAlchemy by default (a URL in config points it at PostgreSQL). Each file's
changes are written in one transaction, so a crash mid-ingest leaves the history as it was.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from schemas.daily import DATE, DailyHistory
from tasks.errors import RunStopped

# What SQLite and PostgreSQL say when the storage refuses a write.
UNWRITABLE = ("readonly", "read-only", "disk is full", "disk i/o error", "no space left", "could not extend file")


class StoreUnwritable(RunStopped):
    """The history store refused a write (read-only, disk full); the transaction was rolled back."""


@contextmanager
def writing(store_url: str) -> Iterator[None]:
    """Turn a storage refusal inside a write into StoreUnwritable, naming the store."""
    try:
        yield
    except sa.exc.OperationalError as error:
        if not any(text in str(error).lower() for text in UNWRITABLE):
            raise
        reason = str(error.orig).strip()
        raise StoreUnwritable(f"history store {store_url} cannot be written ({reason}): nothing was changed") from error


class StoreUnreadable(RunStopped):
    """The history store cannot be opened as one (not a database, other columns, server gone)."""


@dataclass(frozen=True)
class Store:
    """An open history store: the engine and its tables."""

    engine: sa.Engine
    days: sa.Table
    files: sa.Table
    revisions: sa.Table
    trainings: sa.Table
    forecasts: sa.Table
    live_scores: sa.Table
    value_columns: list[str]


def _tables(metadata: sa.MetaData, value_columns: list[str]) -> tuple[sa.Table, ...]:
    days = sa.Table(
        "daily_history",
        metadata,
        sa.Column(DATE, sa.Date, primary_key=True),
        *[sa.Column(name, sa.BigInteger, nullable=False) for name in value_columns],
    )
    files = sa.Table(
        "ingested_files",
        metadata,
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_date", sa.Date, nullable=False),
        sa.Column("last_date", sa.Date, nullable=False),
        sa.Column("days_added", sa.Integer, nullable=False),
        sa.Column("days_revised", sa.Integer, nullable=False),
    )
    revisions = sa.Table(
        "revisions",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(DATE, sa.Date, nullable=False),
        sa.Column("column", sa.String(200), nullable=False),
        sa.Column("old_value", sa.BigInteger, nullable=False),
        sa.Column("new_value", sa.BigInteger, nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("revised_at", sa.DateTime(timezone=True), nullable=False),
    )
    # One row per retrain that registered and decided: how many stored changes it trained on.
    trainings = sa.Table(
        "trainings",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("changes_through", sa.Integer, nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Every forecast a champion made (predict, and each retrain's coming days), kept to be scored when its day arrives.
    forecasts = sa.Table(
        "forecasts",
        metadata,
        sa.Column("model_version", sa.String(50), primary_key=True),
        sa.Column("data_through", sa.Date, primary_key=True),  # the last day the forecast saw
        sa.Column(DATE, sa.Date, primary_key=True),  # the day it is for
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("forecast", sa.Float, nullable=False),  # travellers
        sa.Column("intervals", sa.JSON, nullable=False),  # {"80": [lower, upper], ...}
        sa.Column("made_by", sa.String(20), nullable=False),  # predict | retrain
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
    )
    # One row per version and day scored: its live metrics as logged to MLflow.
    live_scores = sa.Table(
        "live_scores",
        metadata,
        sa.Column("model_version", sa.String(50), primary_key=True),
        sa.Column(DATE, sa.Date, primary_key=True),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    )
    return days, files, revisions, trainings, forecasts, live_scores


@functools.lru_cache(maxsize=64)
def _engine_and_tables(url: str, value_columns: tuple[str, ...], schema: str | None) -> tuple[sa.Engine, sa.MetaData, tuple]:
    """One engine and one set of table objects per store and process, as SQLAlchemy advises.

    Opening a store again then leaves no garbage behind: collecting an engine or table runs
    SQLAlchemy callbacks, and a signal that arrives while one runs is lost (Python prints
    "Exception ignored" and the run goes on), so a stop could go unheeded. SQLite connections are
    not pooled (a store file replaced on disk is opened afresh) and wait up to 30 s for a
    concurrent writer; PostgreSQL's pool checks a connection before use (the server may have restarted).
    """
    sqlite = url.startswith("sqlite")
    options = {"connect_args": {"timeout": 30}, "poolclass": sa.pool.NullPool} if sqlite else {"pool_pre_ping": True}
    metadata = sa.MetaData(schema=schema)
    return sa.create_engine(url, **options), metadata, _tables(metadata, list(value_columns))


def open_store(url: str, value_columns: list[str], schema: str | None = None) -> Store:
    """Open (creating if needed) the store, its tables in `schema` if given; refuse one whose columns differ from the config's."""
    engine, metadata, tables = _engine_and_tables(url, tuple(value_columns), schema)
    try:
        with writing(str(engine.url)):  # the URL as SQLAlchemy prints it: no password
            if schema:
                with engine.begin() as connection:
                    connection.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            metadata.create_all(engine)
        stored = [c["name"] for c in sa.inspect(engine).get_columns("daily_history", schema=schema)]
    except sa.exc.DatabaseError as error:
        raise StoreUnreadable(
            f"history store {engine.url} cannot be read ({str(error.orig).strip()}): restore it from a backup, "
            "or point retrain.history_path (history_url) at the right store; nothing was changed"
        ) from error
    if stored != [DATE, *value_columns]:
        raise StoreUnreadable(
            f"history store {engine.url} has columns {stored}; the config expects {[DATE, *value_columns]}: "
            "a store belongs to one input format, give this config its own retrain.history_path"
        )
    return Store(engine, *tables, value_columns)


def read_history(store: Store) -> pd.DataFrame:
    """Every stored day, in date order, as DailyHistory (empty if nothing is stored yet)."""
    with store.engine.connect() as connection:
        frame = pd.read_sql(sa.select(store.days).order_by(store.days.c[DATE]), connection)
    frame[DATE] = pd.to_datetime(frame[DATE])
    frame = frame.astype({c: "int64" for c in store.value_columns})
    return DailyHistory.validate(frame) if len(frame) else frame


def is_ingested(store: Store, sha256: str) -> bool:
    """Whether a file with these exact bytes was ingested before."""
    with store.engine.connect() as connection:
        return connection.execute(sa.select(store.files.c.sha256).where(store.files.c.sha256 == sha256)).first() is not None


def _records(frame: pd.DataFrame) -> list[dict]:
    rows = frame.assign(**{DATE: frame[DATE].dt.date}).to_dict("records")
    return [{key: (int(value) if key != DATE else value) for key, value in row.items()} for row in rows]


def apply_file(store: Store, sha256: str, name: str, new_days: pd.DataFrame, revisions: pd.DataFrame, span: tuple) -> None:
    """Add new days, apply and record revisions, record the file: all or nothing."""
    now = datetime.now(UTC)
    with writing(str(store.engine.url)), store.engine.begin() as connection:
        if len(new_days):
            connection.execute(sa.insert(store.days), _records(new_days[[DATE, *store.value_columns]]))
        for change in revisions.itertuples(index=False):
            day = change.date.date()
            connection.execute(
                sa.update(store.days).where(store.days.c[DATE] == day).values({change.column: int(change.new_value)})
            )
            connection.execute(
                sa.insert(store.revisions).values(
                    date=day,
                    column=change.column,
                    old_value=int(change.old_value),
                    new_value=int(change.new_value),
                    file_sha256=sha256,
                    revised_at=now,
                )
            )
        connection.execute(
            sa.insert(store.files).values(
                sha256=sha256,
                name=name,
                ingested_at=now,
                first_date=span[0].date(),
                last_date=span[1].date(),
                days_added=len(new_days),
                days_revised=revisions[DATE].nunique() if len(revisions) else 0,
            )
        )


def read_revisions(store: Store) -> pd.DataFrame:
    """Every recorded revision, oldest first."""
    with store.engine.connect() as connection:
        return pd.read_sql(sa.select(store.revisions).order_by(store.revisions.c.id), connection)


def changes_count(store: Store) -> int:
    """Days added plus days revised, over every file ever ingested: grows with each change."""
    total = sa.func.coalesce(sa.func.sum(store.files.c.days_added + store.files.c.days_revised), 0)
    with store.engine.connect() as connection:
        return int(connection.execute(sa.select(total)).scalar_one())


def trained_through(store: Store) -> int:
    """The change count the last completed retrain trained on (0 if none completed)."""
    trained = sa.func.coalesce(sa.func.max(store.trainings.c.changes_through), 0)
    with store.engine.connect() as connection:
        return int(connection.execute(sa.select(trained)).scalar_one())


def record_training(store: Store, changes_through: int, model_version: str, run_id: str) -> None:
    """Mark the history up to `changes_through` as trained on (by a run that registered and decided)."""
    with writing(str(store.engine.url)), store.engine.begin() as connection:
        connection.execute(
            sa.insert(store.trainings).values(
                changes_through=changes_through, model_version=model_version, run_id=run_id, trained_at=datetime.now(UTC)
            )
        )


def save_forecasts(store: Store, rows: pd.DataFrame) -> int:
    """Keep forecasts (columns as the `forecasts` table); one already kept for its version, data and day stays as it
    was. Returns how many were new."""
    keys = ["model_version", "data_through", DATE]
    kept = read_forecasts(store)[keys].assign(kept=True)
    new = rows.merge(kept, on=keys, how="left")
    new = new[new["kept"].isna()].drop(columns="kept")
    records = [row | {"data_through": row["data_through"].date(), DATE: row[DATE].date()} for row in new.to_dict("records")]
    if records:
        with writing(str(store.engine.url)), store.engine.begin() as connection:
            connection.execute(sa.insert(store.forecasts), records)
    return len(records)


def read_forecasts(store: Store) -> pd.DataFrame:
    """Every kept forecast, by version, data and day."""
    table = store.forecasts
    with store.engine.connect() as connection:
        frame = pd.read_sql(sa.select(table).order_by(table.c.model_version, table.c.data_through, table.c[DATE]), connection)
    return frame.assign(**{column: pd.to_datetime(frame[column]) for column in ("data_through", DATE)})


def read_live_scores(store: Store) -> pd.DataFrame:
    """Every live score kept: version, day, metrics (a dict), in day order."""
    table = store.live_scores
    with store.engine.connect() as connection:
        frame = pd.read_sql(sa.select(table).order_by(table.c[DATE], table.c.model_version), connection)
    return frame.assign(**{DATE: pd.to_datetime(frame[DATE])})


def save_live_scores(store: Store, scores: pd.DataFrame) -> None:
    """Keep newly scored days (model_version, date, metrics)."""
    now = datetime.now(UTC)
    records = [row | {DATE: row[DATE].date(), "scored_at": now} for row in scores.to_dict("records")]
    if records:
        with writing(str(store.engine.url)), store.engine.begin() as connection:
            connection.execute(sa.insert(store.live_scores), records)


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock on the store's database, for retrains on several machines.

    Held by one connection: released by `release`, or by the server when the holder's
    connection ends (a killed process's too), so a crash never leaves it stuck.
    """

    def __init__(self, url: str, name: str):
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)  # a pooled connection would keep the lock
        self.key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self.connection: sa.Connection | None = None

    def acquire(self, timeout: float) -> bool:
        """Take the lock, waiting up to `timeout` seconds; False if another session held it all that time."""
        try:
            connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except sa.exc.OperationalError as error:
            raise StoreUnreadable(
                f"history store {self.engine.url} cannot be reached ({' '.join(str(error.orig).split())}); nothing was changed"
            ) from error
        try:
            if timeout <= 0:
                taken = connection.execute(sa.select(sa.func.pg_try_advisory_lock(self.key))).scalar_one()
            else:
                connection.execute(sa.select(sa.func.set_config("lock_timeout", f"{int(timeout * 1000)}ms", False)))
                try:
                    connection.execute(sa.select(sa.func.pg_advisory_lock(self.key)))
                    taken = True
                except sa.exc.OperationalError as error:
                    if getattr(error.orig, "sqlstate", None) != "55P03":  # lock_not_available: the wait ran out
                        raise
                    taken = False
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            return False
        self.connection = connection
        return True

    def release(self) -> None:
        if self.connection is not None:
            self.connection.close()  # ending the session releases its advisory locks
            self.connection = None
