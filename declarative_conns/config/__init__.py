"""The configuration: TOML documents and project files in, a validated desired state out.

- `loader`: a file or folder of TOML -> `DesiredState` (objects by address, settings), every
  problem in one report (`findings`), secret references kept as references.
- `schema`, `resources`: the JSON Schemas (jsonschema-rs as the fast gate, jsonschema's messages).
- `conn_types`, `typecheck`, `validation`: what each conn_type accepts.
- `secrets`: resolving references (env, file, command), bounded, and `--no-commands`.
- `project`, `layers`, `interpolate`: `dconn.toml` environments, layered documents, `${vars.X}`.
"""
