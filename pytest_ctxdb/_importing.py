"""Resolve ``module:attribute`` import strings named by ini settings."""

from __future__ import annotations

import importlib

from ._errors import ConfigurationError

__all__ = ("import_object",)


def import_object(spec: str, setting: str) -> tuple[object, object, str]:
    """Import ``module:attr.attr`` and return what it names.

    :param spec: e.g. ``"myapp.models:Base.metadata"``.
    :param setting: the ini key or option that gave it, for error messages.
    :returns: ``(value, owner, attribute)``: the object, the object holding it (module or
        class) and the last attribute name, so that callers can replace it.
    :raises ConfigurationError: the string is malformed, the module does not import, or an
        attribute is missing; the message names ``setting``.
    """
    module_name, sep, attr_path = spec.strip().partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigurationError(
            f"{setting}: {spec!r} is not an import string; write module:attribute, "
            "e.g. myapp.models:Base.metadata."
        )
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import-time error is the user's to see
        raise ConfigurationError(
            f"{setting}: cannot import module {module_name!r} of {spec!r}: "
            f"{type(exc).__name__}: {exc}. Check the name and that it is importable "
            "(installed, or on pythonpath)."
        ) from None
    owner, name = obj, ""
    for part in attr_path.split("."):
        owner, name = obj, part
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(
                f"{setting}: {spec!r}: {type(owner).__name__} "
                f"{getattr(owner, '__name__', owner)!r} has no attribute {part!r}."
            ) from None
    return obj, owner, name
