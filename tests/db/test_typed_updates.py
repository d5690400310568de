"""``repository.update_vm`` takes only the columns ``VMChanges`` names (mypy
rejects any other keyword); every one of them must be a real column of ``VM``."""

from __future__ import annotations

import typing

from requestor.db.models import VM
from requestor.db.repository import VMChanges


def test_every_changeable_field_is_a_column_of_the_same_type() -> None:
    columns = {column.name: column for column in VM.__table__.columns}
    hints = typing.get_type_hints(VMChanges)
    assert hints, "VMChanges names no column"
    for name in hints:
        assert name in columns, f"VMChanges.{name} is no column of vms"
        assert columns[name].nullable == (type(None) in typing.get_args(hints[name])), name
