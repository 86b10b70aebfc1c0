"""Build Airflow-shaped `connection` tables, as each Airflow generation created them.

Shapes (from Airflow's models and migrations, see shared/spec/AIRFLOW-FACTS.md):
- "1.10": no description, conn_id nullable and not unique, String(5000) password/extra.
- "2.x": description, conn_id UNIQUE NOT NULL (constraint connection_conn_id_uq), Text login/password/extra.
- "2.x-nounique": 2.x columns without the UNIQUE constraint, as a MySQL database is left when the
  2.0 upgrade stops at the unique-conn_id migration because of duplicates.
- "3.1": 2.x + team_id (a UUID referencing team.id).
- "3.2": 2.x + team_name referencing team.name (ON DELETE SET NULL), flags NOT NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

SHAPES = ("1.10", "2.x", "2.x-nounique", "3.1", "3.2")


def connection_table(metadata: sa.MetaData, shape: str) -> sa.Table:
    """Declare the connection table of one Airflow generation."""
    is_110 = shape == "1.10"
    text = sa.String(5000) if is_110 else sa.Text()
    columns: list[Any] = [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "conn_id", sa.String(250, collation=_bin(metadata)), nullable=is_110 or shape == "2.x-nounique"
        ),
        sa.Column("conn_type", sa.String(500), nullable=is_110),
    ]
    if not is_110:
        columns.append(sa.Column("description", sa.Text()))
    columns += [
        sa.Column("host", sa.String(500)),
        sa.Column("schema", sa.String(500)),
        sa.Column("login", sa.String(500) if is_110 else sa.Text()),
        sa.Column("password", text),
        sa.Column("port", sa.Integer),
        sa.Column("is_encrypted", sa.Boolean, nullable=shape != "3.2"),
        sa.Column("is_extra_encrypted", sa.Boolean, nullable=shape != "3.2"),
        sa.Column("extra", text),
    ]
    if shape == "3.1":
        columns.append(sa.Column("team_id", sa.Uuid(), sa.ForeignKey("team.id")))
    if shape == "3.2":
        columns.append(sa.Column("team_name", sa.String(50), sa.ForeignKey("team.name", ondelete="SET NULL")))
    if shape in ("2.x", "3.1", "3.2"):
        columns.append(sa.UniqueConstraint("conn_id", name="connection_conn_id_uq"))
    return sa.Table("connection", metadata, *columns)


def _bin(metadata: sa.MetaData) -> str | None:
    """Return the collation Airflow gives conn_id on MySQL (set by the caller via info)."""
    return metadata.info.get("conn_id_collation")


def create_airflow_tables(engine: sa.Engine, shape: str) -> sa.Table:
    """Create the connection table (and the team table 3.x references) on an engine."""
    metadata = sa.MetaData()
    if engine.dialect.name == "mysql":
        metadata.info["conn_id_collation"] = "utf8mb3_bin"
    if shape in ("3.1", "3.2"):
        sa.Table(
            "team",
            metadata,
            sa.Column("id", sa.Uuid(), primary_key=True),
            sa.Column("name", sa.String(50), unique=True, nullable=False),
        )
    table = connection_table(metadata, shape)
    metadata.create_all(engine)
    return table


def insert_raw(engine: sa.Engine, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert rows exactly as given (already encrypted or not), filling Airflow's flag defaults."""
    prepared = []
    for row in rows:
        # executemany needs the same keys in every row: unset columns are NULL.
        full = {c.name: None for c in table.c if c.name != "id"}
        full.update({"is_encrypted": False, "is_extra_encrypted": False, **row})
        prepared.append({k: v for k, v in full.items() if k in table.c})
    with engine.begin() as conn:
        conn.execute(table.insert(), prepared)


#: Shapes of the `variable` and `slot_pool` tables: 1.10 (no variable description), 2.x before
#: 2.7 (no include_deferred), 2.7+ and 3.0/3.1, and 3.2+ (team_name on both).
KIND_SHAPES = ("1.10", "2.6", "2.x", "3.2")


def kind_tables(metadata: sa.MetaData, shape: str) -> tuple[sa.Table, sa.Table]:
    """Declare the `variable` and `slot_pool` tables of one Airflow generation."""

    def team() -> list[Any]:
        if shape != "3.2":
            return []
        return [sa.Column("team_name", sa.String(50), sa.ForeignKey("team.name", ondelete="SET NULL"))]

    variable = sa.Table(
        "variable",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(250, collation=_bin(metadata)), unique=True, nullable=shape == "1.10"),
        sa.Column("val", sa.Text(), nullable=shape == "1.10"),
        *([sa.Column("description", sa.Text())] if shape != "1.10" else []),
        sa.Column("is_encrypted", sa.Boolean, nullable=shape != "3.2"),
        *team(),
    )
    pool = sa.Table(
        "slot_pool",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pool", sa.String(256, collation=_bin(metadata)), unique=True),
        sa.Column("slots", sa.Integer),
        sa.Column("description", sa.Text()),
        *([sa.Column("include_deferred", sa.Boolean, nullable=False)] if shape in ("2.x", "3.2") else []),
        *team(),
    )
    return variable, pool


def create_kind_tables(engine: sa.Engine, shape: str) -> tuple[sa.Table, sa.Table]:
    """Create `variable` and `slot_pool` beside an existing connection table, with default_pool as Airflow seeds it."""
    metadata = sa.MetaData()
    if engine.dialect.name == "mysql":
        metadata.info["conn_id_collation"] = "utf8mb3_bin"
    if shape == "3.2":
        sa.Table("team", metadata, sa.Column("name", sa.String(50), primary_key=True), extend_existing=True)
    variable, pool = kind_tables(metadata, shape)
    variable.create(engine)
    pool.create(engine)
    seed = {"pool": "default_pool", "slots": 128, "description": "Default pool"}
    if "include_deferred" in pool.c:
        seed["include_deferred"] = False
    with engine.begin() as conn:
        conn.execute(pool.insert(), [seed])
    return variable, pool
