"""Onboarding an existing deployment: export what a target holds, or convert Airflow's own files.

`export` renders stored objects as a dconn document (secrets as `from_env` placeholders);
`airflow_files` reads `airflow connections export` files and `AIRFLOW_CONN_*` variables;
`toml_writer` writes the TOML with tomlkit.
"""
