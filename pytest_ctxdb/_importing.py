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
    :raises ConfigurationError: the string is malformed; importing the module raises anything;
        an attribute is missing or raises when read (a value made lazily: Flask-SQLAlchemy's
        ``db.engine`` outside an app context); or the value is ``None`` (a value made at app
        start-up, not at import). The message names ``setting`` and the cause.
    """
    module_name, sep, attr_path = spec.strip().partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigurationError(
            f"{setting}: {spec!r} is not an import string; write module:attribute, "
            "e.g. myapp.models:Base.metadata."
        )
    try:
        obj: object = importlib.import_module(module_name)
    except BaseException as exc:  # noqa: BLE001 - SystemExit from an app's settings included
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ConfigurationError(
            f"{setting}: cannot import module {module_name!r} of {spec!r}: "
            f"{type(exc).__name__}: {exc}. Check the name and that it is importable "
            "(installed, or on pythonpath), with the settings (environment) it needs."
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
        except Exception as exc:  # noqa: BLE001 - a property that needs a running app
            raise ConfigurationError(
                f"{setting}: {spec!r}: reading {part!r} raised {type(exc).__name__}: {exc}. "
                "The value is made lazily (inside an app context or at start-up), so an "
                "import string cannot name it; name the object it is made from instead."
            ) from None
    if obj is None:
        raise ConfigurationError(
            f"{setting}: {spec!r} is None at import: the value is made lazily (at app "
            "start-up or on first use), so an import string cannot name it; name the object "
            "it is made from, or make it at import."
        )
    return obj, owner, name
