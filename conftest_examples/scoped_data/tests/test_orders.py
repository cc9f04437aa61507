"""Tests of one module share Alice's login and the catalogue; each starts from them as
they were built."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, delete, select

from shop.models import Order, Product, Token


def test_alice_orders_an_espresso(
    client: TestClient, alice: dict[str, str], catalogue: dict[str, int], db_session: Session
) -> None:
    response = client.post("/orders", params={"product_id": catalogue["Espresso"]}, headers=alice)
    assert response.status_code == 201
    assert len(client.get("/orders", headers=alice).json()) == 1
    assert len(db_session.exec(select(Order)).all()) == 1


def test_her_order_is_gone_but_she_is_still_logged_in(
    client: TestClient, alice: dict[str, str], db_session: Session
) -> None:
    assert client.get("/orders", headers=alice).json() == []


def test_logging_out_everyone(client: TestClient, alice: dict[str, str], db_session: Session) -> None:
    db_session.exec(delete(Token))  # type: ignore[call-overload]
    db_session.commit()
    assert client.get("/orders", headers=alice).status_code == 401


def test_and_she_is_logged_in_again(
    client: TestClient, alice: dict[str, str], db_session: Session
) -> None:
    assert client.get("/orders", headers=alice).status_code == 200


def test_emptying_the_catalogue(client: TestClient, db_session: Session) -> None:
    db_session.exec(delete(Product))  # type: ignore[call-overload]
    db_session.commit()
    assert client.get("/products").json() == []


def test_sees_the_catalogue_restored(
    client: TestClient, catalogue: dict[str, int], db_session: Session
) -> None:
    assert [product["name"] for product in client.get("/products").json()] == [
        "Espresso",
        "Latte",
    ]
