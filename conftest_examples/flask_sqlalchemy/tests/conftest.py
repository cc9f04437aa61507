import pytest

from shop import create_app


@pytest.fixture
def app(db_session):
    """An app per test, made after the test's binding opened (it requests db_session): its
    engines are bound as init_app makes them. An app made once for the run works too."""
    app = create_app({"TESTING": True})
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    return app.test_client()
