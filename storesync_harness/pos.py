"""A simulated POS: valid sales, returns and voids with totals that add up."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

SKUS = [
    ("TEE-BLK-M", "19.90"),
    ("JEANS-32", "59.00"),
    ("SOCKS-3P", "9.95"),
    ("CAP-RED", "14.50"),
    ("BAG-TOTE", "4.99"),
]
TAX = Decimal("0.19")


class Pos:
    """Generates the transactions of one register, deterministic for a seed."""

    def __init__(self, register_id: str, seed: int = 0, start: datetime | None = None) -> None:
        self.register_id = register_id
        self.rng = random.Random(f"{register_id}/{seed}")
        self.n = 0
        self.clock = start or datetime(2026, 11, 22, 9, 0, 0)
        self.sales: list[dict[str, Any]] = []

    def _next_id(self) -> str:
        self.n += 1
        return f"{self.register_id}-{self.n:06d}"

    def _tick(self) -> str:
        self.clock += timedelta(seconds=self.rng.randint(5, 90))
        return self.clock.isoformat(timespec="seconds")

    def sale(self) -> dict[str, Any]:
        lines = []
        for sku, price in self.rng.sample(SKUS, self.rng.randint(1, 3)):
            qty = self.rng.randint(1, 3)
            tax = (Decimal(price) * qty * TAX).quantize(Decimal("0.01"))
            lines.append({"sku": sku, "qty": str(qty), "unit_price": price, "discount": "0.00", "tax": str(tax)})
        total = sum(Decimal(x["unit_price"]) * int(x["qty"]) + Decimal(x["tax"]) for x in lines)
        tender: dict[str, Any] = {"type": self.rng.choice(["card", "cash"]), "amount": str(total)}
        if tender["type"] == "card":
            tender["card_last4"] = f"{self.rng.randint(0, 9999):04d}"
        txn = {
            "txn_id": self._next_id(), "register_id": self.register_id, "kind": "sale",
            "occurred_at": self._tick(), "currency": "EUR", "lines": lines, "tenders": [tender], "total": str(total),
        }  # fmt: skip
        self.sales.append(txn)
        return txn

    def return_of(self, sale: dict[str, Any], channel: str | None = None) -> dict[str, Any]:
        line = dict(sale["lines"][0], qty="1", disposition=self.rng.choice(["restock", "damaged"]))
        line["tax"] = str((Decimal(line["unit_price"]) * TAX).quantize(Decimal("0.01")))
        total = Decimal(line["unit_price"]) + Decimal(line["tax"])
        txn: dict[str, Any] = {
            "txn_id": self._next_id(), "register_id": self.register_id, "kind": "return",
            "occurred_at": self._tick(), "currency": "EUR", "lines": [line],
            "tenders": [{"type": "cash", "amount": str(total)}], "total": str(total),
        }  # fmt: skip
        if channel:
            txn["original"] = {
                "channel": channel,
                "order_id": f"{channel.upper()}-{self.rng.randint(1000, 9999)}",
            }
        return txn

    def void_of(self, sale: dict[str, Any]) -> dict[str, Any]:
        return {
            "txn_id": self._next_id(), "register_id": self.register_id, "kind": "void",
            "occurred_at": self._tick(), "currency": "EUR", "lines": [], "tenders": [], "total": "0.00",
            "voided_txn_id": sale["txn_id"],
        }  # fmt: skip

    def mixed(self) -> dict[str, Any]:
        """Mostly sales, some returns and voids of earlier sales."""
        roll = self.rng.random()
        if self.sales and roll < 0.08:
            return self.return_of(self.rng.choice(self.sales), self.rng.choice([None, None, "webshop", "amazon"]))
        if self.sales and roll < 0.11:
            return self.void_of(self.rng.choice(self.sales))
        return self.sale()
