"""Targets: the Airflow deployments dconn plans against and applies to, behind one interface.

`base` says what a target is (`Target`, its `Session`, `Capabilities`: does it show secrets,
hold a transaction, keep duplicate keys, hold the state). `database` reaches the metadata
database with SQLAlchemy (the only package that imports it); `api` reaches the REST API with
httpx (the only package that imports it). `discovery` finds the database URL and Fernet key as
Airflow does.
"""
