"""A small shop: a Flask app factory with Flask-SQLAlchemy, two databases (bind keys)."""

import os

from flask import Flask

from .extensions import db


def create_app(config=None):
    """The app factory, as Flask-SQLAlchemy's docs write it. The URLs are production's; in
    tests they are never connected to (pytest-ctxdb binds the engines the extension makes)."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get(
        "SHOP_DATABASE_URL", "postgresql+psycopg://shop@db.internal/shop"
    )
    app.config["SQLALCHEMY_BINDS"] = {
        "audit": os.environ.get("SHOP_AUDIT_URL", "postgresql+psycopg://shop@db.internal/audit")
    }
    app.config.update(config or {})
    db.init_app(app)

    from . import views

    app.register_blueprint(views.bp)
    return app
