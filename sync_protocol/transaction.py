"""The POS transaction (DESIGN §9): validation, exact totals, card refusal, canonical form.

``parse_transaction`` is the single entry point. It never raises anything but
:class:`TransactionInvalid`, and that error names every bad field with a plain reason.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ._exceptions import FieldError, TransactionInvalid
from .canonical import canonical_dumps
from .cards import find_pans
from .money import QTY_PLACES, fits_minor_units, format_amount, format_qty, parse_decimal, places

SCHEMA_V1 = "storesync.pos.v1"
SCHEMA_V2 = "storesync.pos.v2"
SCHEMAS = (SCHEMA_V1, SCHEMA_V2)
KINDS = ("sale", "return", "void")
# v2 line types; only ``item`` lines move stock (DESIGN §9).
LINE_TYPES = ("item", "gift_card", "service", "shipping", "tip", "adjustment")
STOCK_LINE_TYPE = "item"

Dec = Annotated[Decimal, BeforeValidator(parse_decimal)]
Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TxnId = Annotated[str, Field(pattern=r"^[!-~]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class Line(_Strict):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Dec
    unit_price: Dec
    discount: Dec = Decimal(0)
    tax: Dec = Decimal(0)
    name: Annotated[str, Field(max_length=200)] | None = None
    disposition: Literal["restock", "damaged"] | None = None
    type: Literal["item", "gift_card", "service", "shipping", "tip", "adjustment"] | None = None


class Tender(_Strict):
    type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    amount: Dec
    card_last4: Annotated[str, Field(pattern=r"^[0-9]{4}$")] | None = None


class OriginalOrder(_Strict):
    channel: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    order_id: Annotated[str, Field(min_length=1, max_length=64)]


class Transaction(_Strict):
    """A validated POS transaction. Build it with :func:`parse_transaction`."""

    schema_: Literal["storesync.pos.v1", "storesync.pos.v2"] = Field(default="storesync.pos.v1", alias="schema")
    txn_id: TxnId
    register_id: Ident
    kind: Literal["sale", "return", "void"]
    occurred_at: Annotated[str, Field(min_length=16, max_length=40)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    lines: list[Line] = Field(default_factory=list, max_length=2000)
    tenders: list[Tender] = Field(default_factory=list, max_length=50)
    total: Dec
    original: OriginalOrder | None = None
    voided_txn_id: TxnId | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def key(self) -> tuple[str, str]:
        """The idempotency key ``(register_id, txn_id)``."""
        return (self.register_id, self.txn_id)

    def canonical(self) -> dict[str, Any]:
        """The canonical dict: amounts at the currency's minor units, quantities trimmed, no Nones.

        A v2 transaction names every line's ``type`` (``item`` when the POS left it out); a v1
        transaction has no line types, so its canonical form is what it always was.
        """
        cur = self.currency
        v2 = self.schema_ == SCHEMA_V2
        out: dict[str, Any] = {
            "schema": self.schema_,
            "txn_id": self.txn_id,
            "register_id": self.register_id,
            "kind": self.kind,
            "occurred_at": self.occurred_at,
            "currency": cur,
            "lines": [],
            "tenders": [],
            "total": format_amount(self.total, cur),
        }
        for line in self.lines:
            item: dict[str, Any] = {
                "sku": line.sku,
                "qty": format_qty(line.qty),
                "unit_price": format_amount(line.unit_price, cur),
                "discount": format_amount(line.discount, cur),
                "tax": format_amount(line.tax, cur),
            }
            if line.name is not None:
                item["name"] = line.name
            if line.disposition is not None:
                item["disposition"] = line.disposition
            if v2:
                item["type"] = line.type or STOCK_LINE_TYPE
            out["lines"].append(item)
        for tender in self.tenders:
            t: dict[str, Any] = {"type": tender.type, "amount": format_amount(tender.amount, cur)}
            if tender.card_last4 is not None:
                t["card_last4"] = tender.card_last4
            out["tenders"].append(t)
        if self.original is not None:
            out["original"] = {"channel": self.original.channel, "order_id": self.original.order_id}
        if self.voided_txn_id is not None:
            out["voided_txn_id"] = self.voided_txn_id
        return out

    def canonical_json(self) -> str:
        return canonical_dumps(self.canonical())


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = "schema" if part == "schema_" else str(part)
            out += f".{name}" if out else name
    return out or "(transaction)"


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see docs/protocol.md for the schema)"
        errors.append(FieldError(_loc_to_field(loc), msg))
    return errors


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _business_errors(txn: Transaction) -> list[FieldError]:
    cur = txn.currency
    errors: list[FieldError] = []
    if _parse_time(txn.occurred_at) is None:
        errors.append(FieldError("occurred_at", "must be an ISO 8601 date and time, e.g. 2026-11-22T10:15:03"))

    def money(field: str, amount: Decimal, allow_negative: bool = False) -> None:
        if amount < 0 and not allow_negative:
            errors.append(FieldError(field, "must not be negative"))
        elif not fits_minor_units(amount, cur):
            errors.append(FieldError(field, f"{amount} has more decimal places than {cur} minor units allow"))

    gross = Decimal(0)
    discounts = Decimal(0)
    taxes = Decimal(0)
    for i, line in enumerate(txn.lines):
        if line.qty <= 0:
            errors.append(FieldError(f"lines[{i}].qty", "must be greater than zero (returns use positive quantities)"))
        elif places(line.qty) > QTY_PLACES:
            errors.append(FieldError(f"lines[{i}].qty", f"at most {QTY_PLACES} decimal places"))
        money(f"lines[{i}].unit_price", line.unit_price)
        money(f"lines[{i}].discount", line.discount)
        money(f"lines[{i}].tax", line.tax)
        amount = line.qty * line.unit_price
        if line.qty > 0 and not fits_minor_units(amount, cur):
            errors.append(
                FieldError(f"lines[{i}]", f"qty × unit_price = {amount} is not a whole number of {cur} minor units")
            )
        if line.disposition is not None and txn.kind != "return":
            errors.append(FieldError(f"lines[{i}].disposition", "only return lines carry a disposition"))
        if line.type is not None and txn.schema_ != SCHEMA_V2:
            errors.append(FieldError(f"lines[{i}].type", f'line types need "schema": "{SCHEMA_V2}"'))
        gross += amount
        discounts += line.discount
        taxes += line.tax
    for i, tender in enumerate(txn.tenders):
        money(f"tenders[{i}].amount", tender.amount)
        if tender.card_last4 is not None and tender.type != "card":
            errors.append(FieldError(f"tenders[{i}].card_last4", "only card tenders carry card_last4"))
    money("total", txn.total)

    if txn.kind in ("sale", "return") and not txn.lines:
        errors.append(FieldError("lines", f"a {txn.kind} needs at least one line"))
    if txn.kind == "void" and not txn.voided_txn_id:
        errors.append(FieldError("voided_txn_id", "required for a void: the txn_id being voided"))
    if txn.kind != "void" and txn.voided_txn_id is not None:
        errors.append(FieldError("voided_txn_id", "only a void names a voided transaction"))
    if txn.kind != "return" and txn.original is not None:
        errors.append(FieldError("original", "only a return references an original order"))
    if errors:
        return errors

    expected = gross - discounts + taxes
    if expected != txn.total:
        errors.append(
            FieldError(
                "total",
                f"lines {format_amount(gross, cur)} − discounts {format_amount(discounts, cur)} + tax "
                f"{format_amount(taxes, cur)} = {format_amount(expected, cur)}, but total is "
                f"{format_amount(txn.total, cur)}",
            )
        )
    tendered = sum((t.amount for t in txn.tenders), Decimal(0))
    if (txn.tenders or txn.total != 0) and tendered != txn.total:
        errors.append(
            FieldError(
                "tenders",
                f"tenders add up to {format_amount(tendered, cur)}, but total is {format_amount(txn.total, cur)}",
            )
        )
    return errors


def parse_transaction(raw: Any, *, scan_cards: bool = True) -> Transaction:
    """Validate a POS transaction as decoded from JSON.

    Args:
        raw: The decoded transaction.
        scan_cards: Look for full card numbers. Only a caller that has already scanned this exact
            value may skip it (the hub, deriving events from a body its ingest checked).

    Raises:
        TransactionInvalid: naming every bad field. A full card number anywhere is refused and the
            number itself is never echoed.
    """
    if not isinstance(raw, dict):
        raise TransactionInvalid([FieldError("(transaction)", "must be a JSON object")])
    pans = list(find_pans(raw)) if scan_cards else []
    if pans:
        raise TransactionInvalid(
            [FieldError(p, "holds what looks like a full card number; send only card_last4") for p in pans]
        )
    try:
        txn = Transaction.model_validate(raw)
    except ValidationError as exc:
        raise TransactionInvalid(_pydantic_errors(exc)) from None
    errors = _business_errors(txn)
    if errors:
        raise TransactionInvalid(errors)
    return txn
