from flask import Blueprint, abort, jsonify, request
from sqlalchemy import select

from .extensions import db
from .models import AuditEntry, Order, Product

bp = Blueprint("shop", __name__)


def audit(what):
    db.session.add(AuditEntry(what=what))


@bp.post("/products")
def create_product():
    product = Product(name=request.json["name"], stock=request.json.get("stock", 0))
    db.session.add(product)
    audit(f"product {product.name} created")
    db.session.commit()
    return jsonify(id=product.id, name=product.name), 201


@bp.get("/products")
def list_products():
    products = db.session.scalars(select(Product).order_by(Product.name))
    return jsonify([{"name": p.name, "stock": p.stock} for p in products])


@bp.post("/products/<int:product_id>/orders")
def order(product_id):
    product = db.get_or_404(Product, product_id)
    quantity = request.json["quantity"]
    if quantity > product.stock:
        abort(409)
    product.stock -= quantity
    db.session.add(Order(product_id=product.id, quantity=quantity))
    audit(f"{quantity} x {product.name} ordered")
    db.session.commit()
    return jsonify(stock=product.stock), 201


@bp.get("/stock")
def stock_report():
    """Raw SQL on the default bind's engine, as reports often do."""
    with db.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT name, stock FROM product ORDER BY name")
        return jsonify({name: stock for name, stock in rows})
