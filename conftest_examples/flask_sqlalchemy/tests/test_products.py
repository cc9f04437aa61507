import pytest
from factories import AuditEntryFactory, ProductFactory
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import AUDIT_COUNT, PRODUCT_NAMES, Order, Product

# The views write to both databases: the tests declare both aliases (one per bind key).
pytestmark = pytest.mark.db(using=["default", "audit"])


@pytest.mark.parametrize("name", ["kettle", "teapot"])
def test_create_product_commits_in_the_test(client, db_session, db_sessions, name):
    assert db_session.scalars(PRODUCT_NAMES).all() == []  # every run starts empty
    response = client.post("/products", json={"name": name, "stock": 3})
    assert response.status_code == 201
    assert client.get("/products").json == [{"name": name, "stock": 3}]
    assert db_session.scalars(PRODUCT_NAMES).all() == [name]
    assert db_sessions["audit"].scalar(AUDIT_COUNT) == 1


def test_factories_commit_through_db_session(client, db_session):
    kettle = ProductFactory(name="kettle", stock=2)
    AuditEntryFactory.create_batch(3)
    response = client.post(f"/products/{kettle.id}/orders", json={"quantity": 2})
    assert response.json == {"stock": 0}
    assert db_session.scalar(select(func.count()).select_from(Order)) == 1
    assert db.session.scalar(AUDIT_COUNT) == 4


def test_a_refused_order_changes_nothing(client, db_session):
    kettle = ProductFactory(stock=1)
    assert client.post(f"/products/{kettle.id}/orders", json={"quantity": 5}).status_code == 409
    db_session.expire_all()
    assert db_session.get(Product, kettle.id).stock == 1


def test_db_engine_runs_on_the_test_connection(client, db_connection):
    ProductFactory(name="lamp", stock=4)
    assert client.get("/stock").json == {"lamp": 4}
    with db.engine.connect() as connection:
        assert connection.connection.dbapi_connection is db_connection.connection.dbapi_connection
