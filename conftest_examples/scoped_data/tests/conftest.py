"""Data built once per scope: a seed catalogue for the whole run, a logged-in user per module.

Both write through pytest-ctxdb's layers: what a session- or module-scoped fixture commits
goes into a SAVEPOINT of its scope on the test connection. Every test of the scope sees it,
each test's own changes are rolled back after it, and the scope's data is rolled back when
the scope ends. Nothing is committed for real.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from shop.main import app
from shop.models import Product


@pytest.fixture(scope="session")
def catalogue(db_setup_session: Session) -> dict[str, int]:
    """The products every test starts from, added once per run (the session's layer)."""
    products = [Product(name="Espresso", price_cents=250), Product(name="Latte", price_cents=350)]
    db_setup_session.add_all(products)
    db_setup_session.commit()
    return {product.name: product.id for product in products if product.id is not None}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """FastAPI's TestClient, one per module: requests made by module-scoped fixtures write
    into the module's layer, requests made by a test into the test's transaction."""
    with TestClient(app) as client:
        yield client


def sign_up_and_log_in(client: TestClient, email: str) -> dict[str, str]:
    credentials = {"email": email, "password": "correct horse battery staple"}
    assert client.post("/users", json=credentials).status_code == 201
    response = client.post("/login", json=credentials)
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture(scope="module")
def alice(client: TestClient, catalogue: dict[str, int]) -> dict[str, str]:
    """Alice signs up and logs in over HTTP once per module (two slow password hashes):
    her user and token rows live in the module's layer."""
    return sign_up_and_log_in(client, "alice@example.com")
