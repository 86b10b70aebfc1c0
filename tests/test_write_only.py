"""core.write_only: what dconn takes a secret the target hides (`***`) to be, from what it recorded sending."""

from __future__ import annotations

from typing import Any

import pytest

from declarative_conns.core.crypto import KeyRing
from declarative_conns.core.kinds import CONNECTION, VARIABLE
from declarative_conns.core.model import Address, StoredObject, Values
from declarative_conns.core.recorded import recorded_form
from declarative_conns.core.write_only import MASK, fill_hidden, hidden_in

DIGESTER = KeyRing().digester(b"k" * 32)
WH = Address("connection", "warehouse")


def stored(**fields: Any) -> StoredObject:
    """Return a stored connection as an API shows it."""
    return StoredObject(WH, None, Values(CONNECTION.normalize({"conn_type": "postgres", **fields})), "fp")


def declared(**fields: Any) -> Values:
    """Return declared connection values."""
    return Values(CONNECTION.normalize({"conn_type": "postgres", **fields}))


def record(**fields: Any) -> dict[str, Any]:
    """Return the recorded form of what dconn sent."""
    return recorded_form(declared(**fields), DIGESTER, CONNECTION, CONNECTION.fields)


@pytest.mark.parametrize(
    ("sent", "want", "resend", "password", "unverified"),
    [
        ("pw1", "pw1", False, "pw1", 1),  # sent and still declared: taken as is
        ("pw1", "pw2", False, MASK, 0),  # declared value changed: stays hidden, the plan sends it
        ("pw1", "pw1", True, MASK, 0),  # --resend-secrets: stays hidden
        (None, "pw1", False, MASK, 0),  # never sent: stays hidden
        ("pw1", None, False, MASK, 0),  # no longer declared: hidden, the plan removes it
    ],
)
def test_password_is_filled_only_when_the_record_matches(
    sent: str | None, want: str | None, resend: bool, password: str, unverified: int
) -> None:
    """A hidden password becomes the declared one only when dconn recorded sending exactly that value."""
    applied = {WH: record(password=sent)} if sent else {}
    filled = fill_hidden(
        [stored(password=MASK)], {WH: declared(password=want)}, applied, DIGESTER, resend=resend
    )
    [obj] = filled.objects
    assert obj.values.get("password") == password
    assert filled.unverified == unverified
    assert ("password",) in obj.values.secret_paths


def test_hidden_extra_keys_inside_structures_are_filled_one_by_one() -> None:
    """A hidden key inside extra (nested too) is filled from the record; a changed one stays hidden."""
    extra_sent = {"sslmode": "require", "api_key": "k1", "nested": {"token": "t1"}}
    extra_now = {"sslmode": "require", "api_key": "k1", "nested": {"token": "t2"}}
    shown = {"sslmode": "require", "api_key": MASK, "nested": {"token": MASK}}
    filled = fill_hidden(
        [stored(extra=shown)], {WH: declared(extra=extra_now)}, {WH: record(extra=extra_sent)}, DIGESTER
    )
    [obj] = filled.objects
    assert obj.values.get("extra") == {"sslmode": "require", "api_key": "k1", "nested": {"token": MASK}}
    assert filled.unverified == 1
    assert shown == {
        "sslmode": "require",
        "api_key": MASK,
        "nested": {"token": MASK},
    }  # never changed in place


def test_unseen_password_follows_the_record() -> None:
    """Airflow 2 never returns a password: one recorded is taken as present, none recorded as absent."""
    unseen = {"connection": frozenset({"password"})}
    with_record = fill_hidden(
        [stored()], {WH: declared(password="pw")}, {WH: record(password="pw")}, DIGESTER, unseen=unseen
    )
    assert with_record.objects[0].values.get("password") == "pw"
    changed = fill_hidden(
        [stored()], {WH: declared(password="new")}, {WH: record(password="pw")}, DIGESTER, unseen=unseen
    )
    assert changed.objects[0].values.get("password") == MASK
    none = fill_hidden([stored()], {WH: declared()}, {WH: record()}, DIGESTER, unseen=unseen)
    assert none.objects[0].values.get("password") is None and none.unknown == 1


def test_without_the_records_key_nothing_is_filled() -> None:
    """Digests made with another key cannot be compared: every hidden secret is sent again."""
    filled = fill_hidden(
        [stored(password=MASK)], {WH: declared(password="pw")}, {WH: record(password="pw")}, None
    )
    assert filled.objects[0].values.get("password") == MASK and filled.unverified == 0


def test_a_sensitive_variable_value_declared_as_a_table_is_filled() -> None:
    """A variable's hidden value matches the record of the table that was sent as JSON text."""
    address = Address("variable", "db_password")
    value = {"user": "u", "password": "p"}
    want = Values(VARIABLE.normalize({"value": value}))
    applied = {address: recorded_form(want, DIGESTER, VARIABLE, VARIABLE.fields)}
    shown = StoredObject(address, None, Values(VARIABLE.normalize({"value": MASK})), "fp")
    filled = fill_hidden([shown], {address: want}, applied, DIGESTER)
    assert filled.objects[0].values.get("value") == value


def test_hidden_in_finds_the_mask_anywhere() -> None:
    """A value of `***` anywhere in what would be written is found (Airflow 2 would store it literally)."""
    assert hidden_in(declared(extra={"a": [{"b": MASK}]}))
    assert not hidden_in(declared(extra={"a": "****"}, password="x"))
