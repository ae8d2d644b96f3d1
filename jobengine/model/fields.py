"""The shape of each field of an IPS model: a leaf, a nested model or an array, in XSD order.

The XML reader and writer and the fault messages walk models through these shapes, so a new
model needs no code of its own to be read, written or reported on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

__all__ = ["FieldShape", "field_shapes", "find_field", "is_model"]


@dataclass(frozen=True)
class FieldShape:
    """One field: Python name, IPS name, kind and target type (a model class or a leaf type)."""

    name: str
    alias: str
    kind: Literal["leaf", "model", "array"]
    target: Any
    required: bool

    @property
    def model(self) -> type[BaseModel] | None:
        """The model class of a nested model or of an array's items, else None."""
        return self.target if is_model(self.target) else None


def is_model(tp: Any) -> bool:
    """Whether ``tp`` is a pydantic model class."""
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _bare(tp: Any) -> Any:
    """``tp`` without Annotated metadata and without ``| None``."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or origin is UnionType:
            args = [a for a in get_args(tp) if a is not NoneType]
            if len(args) != 1:
                raise TypeError(f"IPS fields are not unions: {tp!r}")
            tp = args[0]
        else:
            return tp


def _shape(name: str, alias: str, annotation: Any, required: bool) -> FieldShape:
    tp = _bare(annotation)
    if get_origin(tp) is tuple:
        return FieldShape(name, alias, "array", _bare(get_args(tp)[0]), required)
    kind: Literal["leaf", "model"] = "model" if is_model(tp) else "leaf"
    return FieldShape(name, alias, kind, tp, required)


@cache
def field_shapes(model: type[BaseModel]) -> tuple[FieldShape, ...]:
    """The fields of ``model`` in declaration order, which is the XSD sequence."""
    return tuple(
        _shape(name, info.alias or name, info.annotation, info.is_required())
        for name, info in model.model_fields.items()
    )


@cache
def _index(model: type[BaseModel]) -> dict[str, FieldShape]:
    out = {s.name: s for s in field_shapes(model)}
    out.update({s.alias: s for s in field_shapes(model)})
    return out


def find_field(model: type[BaseModel], key: str, *, alias_only: bool = False) -> FieldShape | None:
    """The field named ``key`` (IPS name, or Python name unless ``alias_only``)."""
    shape = _index(model).get(key)
    if shape is None or (alias_only and shape.alias != key):
        return None
    return shape
