from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db


class Product(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    stock: Mapped[int] = mapped_column(default=0)


class Order(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    quantity: Mapped[int]


class AuditEntry(db.Model):
    """Kept in the audit database (bind key "audit"): test alias "audit"."""

    __bind_key__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    what: Mapped[str] = mapped_column(String(200))


PRODUCT_NAMES = select(Product.name).order_by(Product.name)
AUDIT_COUNT = select(func.count()).select_from(AuditEntry)
