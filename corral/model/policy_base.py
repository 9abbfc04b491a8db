"""The base class of every policy section, in its own module so that section modules
(admission, runtime, control, ...) can derive from it without importing ``policy.py``,
which imports them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown fields are errors (a typo must not silently drop a control); values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
