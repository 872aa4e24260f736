"""Exact money: decimal strings checked against the currency's minor unit."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that differ from 2. Every other valid code uses 2.
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}  # fmt: skip
_DECIMAL_TEXT = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")
QTY_PLACES = 3


def minor_unit_exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit (EUR 2, JPY 0, KWD 3)."""
    return _EXPONENTS.get(currency, 2)


def parse_decimal(value: object) -> Decimal:
    """Parse a decimal string such as ``"19.90"``.

    Raises:
        ValueError: with a plain reason when the value is not a decimal string.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        if isinstance(value, int | float):
            raise ValueError(f'must be a decimal string like "{value}", not a JSON number')
        raise ValueError("must be a decimal string")
    text = value.strip()
    if not _DECIMAL_TEXT.match(text):
        raise ValueError(f'"{value}" is not a plain decimal (digits, optional point, up to 6 places)')
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f'"{value}" is not a decimal') from exc


def places(amount: Decimal) -> int:
    """Decimal places actually used by ``amount`` (trailing zeros ignored)."""
    exponent = amount.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


_QUANTUM = {exp: Decimal(1).scaleb(-exp) for exp in range(7)}


def fits_minor_units(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` is a whole number of the currency's minor units."""
    return amount.quantize(_QUANTUM[minor_unit_exponent(currency)]) == amount


def format_amount(amount: Decimal, currency: str) -> str:
    """Render an amount with exactly the currency's minor-unit places (``19.9`` → ``"19.90"``)."""
    return format(amount.quantize(_QUANTUM[minor_unit_exponent(currency)]), "f")


def format_qty(qty: Decimal) -> str:
    """Render a quantity without trailing zeros (``"2.000"`` → ``"2"``)."""
    text = format(qty.normalize(), "f")
    return text if text != "-0" else "0"
