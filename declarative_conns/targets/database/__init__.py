"""The metadata database as a target (the only package that imports SQLAlchemy).

- `target`: `DatabaseTarget` — one connection per run, reads, the apply's transaction and lock.
- `tables`: Airflow's tables per kind, reflected in one query; `rows`: rows <-> values, Fernet.
- `column_rules`: what a column holds (lengths, character sets, NUL, collations), checked at plan time.
- `connect`: engines, drivers, URL spellings, timeouts; `restore`: putting a backup back.
"""
