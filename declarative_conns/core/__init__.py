"""The pure core: what dconn decides, as data and functions without side effects.

- `model`: values, secret references, addresses (kind + key), stored objects, settings.
- `kinds`: connections, variables and pools — their fields, normalisation, which values are secret.
- `operations`: the plan as typed operations (`Create`, `Update`, `Delete` with its
  `DeleteReason`, `Reencrypt`), the drift found and what the plan depends on.
- `planner`: the plan's decisions and the state a run records; `drift`: changes made outside
  dconn; `diff`: field-level explanations; `recorded`: values as files keep them (secrets as
  keyed digests); `digests`, `crypto`: keys; `state`: the state's content; `write_only`:
  secrets a target never shows.

Nothing here imports SQLAlchemy, httpx, typer or rich, touches a file or the network
(tests/test_core_purity.py proves it for every module of the package).
"""
