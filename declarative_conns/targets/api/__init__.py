"""Airflow's REST API as a target (the only package that imports httpx).

`settings` finds the URL and credentials, `client` speaks HTTP (sign-in, retries, errors),
`endpoints` maps each kind to its collection, `target` reads and locks, `writes` carries out an apply, `restore` undoes one.
"""

from declarative_conns.targets.api.settings import ApiSettings, resolve_api_settings
from declarative_conns.targets.api.target import ApiTarget

__all__ = ["ApiSettings", "ApiTarget", "resolve_api_settings"]
