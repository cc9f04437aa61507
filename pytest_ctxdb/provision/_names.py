"""The database names derived from one base name, and the test of whether a name is one.

A *base* is ``test_<database of the URL>``, the ``--db-test-name`` value, or either with
``_<alias>`` appended (two aliases on one database). From it come:

* the template ``<base:40>_tpl_<fingerprint>`` (12 hex digits);
* a spare clone ``<base:30>_sp_<12 hex digits>`` (on MariaDB also a run's database);
* a run's database ``<base>_<run id><suffix>`` cut to the server's limit, or, when the user
  chose the name, ``<base><suffix>``; ``<suffix>`` is ``""`` or ``_gw<N>`` (pytest-xdist);

where ``<name:N>`` is :func:`fit_name`. The sweep drops only names :meth:`BaseNames.derives`
recognises, so a run never drops what another project (another base) left on a shared server.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping

__all__ = ("BaseNames", "fit_name")

#: the longest a template's base part gets (the fingerprint follows).
TEMPLATE_BASE_LIMIT = 40
#: the longest a spare clone's base part gets (its random part follows).
SPARE_BASE_LIMIT = 30
#: xdist worker numbers tried when matching a clone name that was cut and hashed.
MAX_WORKERS = 1024
_WORKER = r"(?:_gw[0-9]+)?"


def fit_name(name: str, limit: int) -> str:
    """``name`` if it has at most ``limit`` bytes (UTF-8), else its start and an 8-digit hash
    of the whole, ``limit`` bytes at most: distinct long names stay distinct."""
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    start = name[: limit - 9]
    while len(f"{start}_{digest}".encode()) > limit:
        start = start[:-1]
    return f"{start}_{digest}"


class BaseNames:
    """The names pytest-ctxdb gives databases of one base name on one server.

    :param base: the base name (see the module docstring).
    :param max_length: the server's longest database name, in bytes.
    """

    def __init__(self, base: str, max_length: int) -> None:
        self.base = base
        self.max_length = max_length
        #: ``<base:40>_tpl_``: a template's name without its fingerprint.
        self.template_prefix = f"{fit_name(base, TEMPLATE_BASE_LIMIT)}_tpl_"
        #: ``<base:30>_sp_``: a spare clone's name without its random part.
        self.spare_prefix = f"{fit_name(base, SPARE_BASE_LIMIT)}_sp_"

    def template(self, fingerprint: str) -> str:
        return f"{self.template_prefix}{fingerprint}"

    def new_spare(self) -> str:
        """A new, random spare clone name."""
        return f"{self.spare_prefix}{uuid.uuid4().hex[:12]}"

    def clone(self, run_id: str | None, suffix: str = "") -> str:
        """A run's database: ``<base>_<run id><suffix>`` fitted to the server's limit, or
        ``<base><suffix>`` (the user's name, never cut) when ``run_id`` is ``None``."""
        if run_id:
            return fit_name(f"{self.base}_{run_id}{suffix}", self.max_length)
        return f"{self.base}{suffix}"

    def is_template(self, name: str) -> bool:
        """``True`` if ``name`` is a template of this base (any fingerprint)."""
        return re.fullmatch(rf"{re.escape(self.template_prefix)}[0-9a-f]{{12}}", name) is not None

    def is_spare_name(self, name: str) -> bool:
        """``True`` if ``name`` is a spare clone name of this base."""
        return re.fullmatch(rf"{re.escape(self.spare_prefix)}[0-9a-f]{{12}}", name) is not None

    def is_clone(self, name: str, run: str | None) -> bool:
        """``True`` if ``name`` is a database of a run of this base whose mark says ``run``:
        the chosen-name form, the run-id form (also cut and hashed), or a spare's name (a
        MariaDB run uses a spare clone under its own name)."""
        if self.is_spare_name(name):
            return True
        if re.fullmatch(rf"{re.escape(self.base)}{_WORKER}", name):
            return True
        if not run or run == "-":
            return False
        if re.fullmatch(rf"{re.escape(self.base)}_{re.escape(run)}{_WORKER}", name):
            return True
        whole = f"{self.base}_{run}"
        cut = re.fullmatch(r"(.*)_[0-9a-f]{8}", name)
        if cut is None or not (whole.startswith(cut[1]) or cut[1].startswith(whole)):
            return False
        suffixes = ["", *(f"_gw{n}" for n in range(MAX_WORKERS))]
        return any(fit_name(f"{whole}{suffix}", self.max_length) == name for suffix in suffixes)

    def derives(self, name: str, fields: Mapping[str, str]) -> bool:
        """``True`` if the marked database ``name`` (mark ``fields``) was named after this
        base: a template, a spare clone (whose template is also of this base) or a run's
        database. Anything else belongs to another base (another project, or another alias)."""
        kind = fields.get("kind")
        if kind == "template":
            return self.is_template(name)
        if kind == "spare":
            return self.is_spare_name(name) and self.is_template(fields.get("template", ""))
        if kind == "clone":
            return self.is_clone(name, fields.get("run"))
        return False
