"""The API: sign up, log in (a slow password hash, as real apps use), the catalogue, orders."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlmodel import select

from .db import SessionDep
from .models import Order, Product, Token, User

app = FastAPI()

#: PBKDF2 rounds: slow on purpose, like any password hash (OWASP asks for far more).
ROUNDS = 200_000


def hash_password(password: str, salt: str) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), ROUNDS)
    return f"{salt}${digest.hex()}"


class Credentials(BaseModel):
    email: str
    password: str


@app.post("/users", status_code=201)
def sign_up(credentials: Credentials, session: SessionDep) -> dict[str, int]:
    user = User(
        email=credentials.email,
        password_hash=hash_password(credentials.password, secrets.token_hex(8)),
    )
    session.add(user)
    session.commit()
    assert user.id is not None
    return {"id": user.id}


@app.post("/login")
def log_in(credentials: Credentials, session: SessionDep) -> dict[str, str]:
    user = session.exec(select(User).where(User.email == credentials.email)).first()
    if user is None:
        raise HTTPException(status_code=401, detail="Unknown user")
    salt = user.password_hash.split("$", 1)[0]
    if hash_password(credentials.password, salt) != user.password_hash:
        raise HTTPException(status_code=401, detail="Wrong password")
    assert user.id is not None
    token = Token(value=secrets.token_hex(16), user_id=user.id)
    session.add(token)
    session.commit()
    return {"token": token.value}


def current_user(session: SessionDep, authorization: Annotated[str, Header()] = "") -> User:
    token = session.get(Token, authorization.removeprefix("Bearer "))
    user = None if token is None else session.get(User, token.user_id)
    if user is None:
        raise HTTPException(status_code=401, detail="Not logged in")
    return user


UserDep = Annotated[User, Depends(current_user)]


@app.get("/products")
def list_products(session: SessionDep) -> list[Product]:
    return list(session.exec(select(Product).order_by(Product.name)).all())


@app.post("/orders", status_code=201)
def place_order(product_id: int, user: UserDep, session: SessionDep) -> dict[str, int]:
    if session.get(Product, product_id) is None:
        raise HTTPException(status_code=404, detail="No such product")
    assert user.id is not None
    order = Order(user_id=user.id, product_id=product_id)
    session.add(order)
    session.commit()
    assert order.id is not None
    return {"id": order.id}


@app.get("/orders")
def my_orders(user: UserDep, session: SessionDep) -> list[Order]:
    return list(session.exec(select(Order).where(Order.user_id == user.id)).all())
