"""factory_boy factories on db.session, committing as the app does."""

import factory
from factory.alchemy import SQLAlchemyModelFactory

from shop.extensions import db
from shop.models import AuditEntry, Product


class ProductFactory(SQLAlchemyModelFactory):
    class Meta:
        model = Product
        sqlalchemy_session = db.session
        sqlalchemy_session_persistence = "commit"

    name = factory.Sequence(lambda n: f"product {n}")
    stock = 10


class AuditEntryFactory(SQLAlchemyModelFactory):
    class Meta:
        model = AuditEntry
        sqlalchemy_session = db.session
        sqlalchemy_session_persistence = "commit"

    what = factory.Sequence(lambda n: f"entry {n}")
