"""Write the suites `bench/layers/README.md` times: module-scoped data built once per module
(a layer) against the same data built per test, and 1,000 ``SELECT 1`` tests with and without
a module layer under them.

    python bench/layers/make_suites.py /tmp/layers-bench
"""

from __future__ import annotations

import sys
from pathlib import Path

MODELS = '''
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
'''

#: the data: 200 rows and one password hash (a login's cost), built by ``SCOPE`` fixtures.
DATA = '''
import hashlib

import pytest
from sqlalchemy import func, select, text

from models import Item


@pytest.fixture(scope="{scope}")
def data(db_setup_session):
    hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 100_000)
    db_setup_session.add_all(Item(name=f"item {{n}}") for n in range(200))
    db_setup_session.commit()


@pytest.mark.parametrize("n", range(10))
def test_reads_the_data(data, db_session, n):
    assert db_session.scalar(select(func.count()).select_from(Item)) == 200
'''

SELECT1 = '''
import pytest
from sqlalchemy import text
{fixture}

@pytest.mark.parametrize("n", range(1000))
def test_select1({argument}db_session, n):
    db_session.execute(text("SELECT 1"))
'''

LAYER = '''
from models import Item


@pytest.fixture(scope="module")
def layer(db_setup_session):
    db_setup_session.add(Item(name="module data"))
    db_setup_session.commit()
'''


def main(root: Path) -> None:
    for name, files in {
        "module_data": {f"test_m{i}.py": DATA.format(scope="module") for i in range(5)},
        "function_data": {f"test_m{i}.py": DATA.format(scope="function") for i in range(5)},
        "select1_layer": {"test_s.py": SELECT1.format(fixture=LAYER, argument="layer, ")},
        "select1_plain": {"test_s.py": SELECT1.format(fixture="", argument="")},
    }.items():
        suite = root / name
        suite.mkdir(parents=True, exist_ok=True)
        (suite / "models.py").write_text(MODELS)
        (suite / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
            "db_metadata = models:Base.metadata\n"
        )
        for filename, text in files.items():
            (suite / filename).write_text(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
