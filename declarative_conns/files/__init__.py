"""The files dconn writes: each written atomically and privately, by one writer each.

- `state`: the state file, written by compare-and-swap, with the pending state of an apply.
- `planfile`: saved plans, authenticated with an HMAC before anything in them is used.
- `backups`: pre-images of what an apply or a restore overwrote.
- `atomic`: temporary file, fsync, rename, mode 0600.
"""
