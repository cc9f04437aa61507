"""Another module: the catalogue is there, Alice's module data is not; Bob logs in here."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from conftest import sign_up_and_log_in


@pytest.fixture(scope="module")
def bob(client: TestClient, catalogue: dict[str, int]) -> dict[str, str]:
    return sign_up_and_log_in(client, "bob@example.com")


def test_alice_is_unknown_here(client: TestClient, bob: dict[str, str], db_session: Session) -> None:
    credentials = {"email": "alice@example.com", "password": "correct horse battery staple"}
    assert client.post("/login", json=credentials).status_code == 401


def test_bob_orders_a_latte(
    client: TestClient, bob: dict[str, str], catalogue: dict[str, int], db_session: Session
) -> None:
    response = client.post("/orders", params={"product_id": catalogue["Latte"]}, headers=bob)
    assert response.status_code == 201
