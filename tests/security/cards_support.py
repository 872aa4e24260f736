"""Card numbers for the security tests: Luhn-valid PANs and ways to write them."""

from __future__ import annotations

import os
import unicodedata

from hypothesis import strategies as st

from sync_protocol.cards import luhn_ok

SCALE = int(os.environ.get("STORESYNC_FUZZ_SCALE", "1"))
"""Multiplies the Hypothesis example counts of the security tests (``make fuzz`` sets 10)."""

TEST_PANS = ["4111111111111111", "5500000000000004", "378282246310005", "6011111111111117", "4222222222222"]
# Separators a person or a program may put between digit groups (each at most three characters).
SEPARATORS = [" ", "-", ".", "/", "_", "   ", " - ", ",", ":", "|", "*", "\u00a0", "\u3000", "\u2009", "a", "x"]
# Invisible characters, any number of them, anywhere.
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]
# Other ways to write a digit: full-width, mathematical bold, Arabic-Indic, Devanagari.
DIGIT_FORMS = [0xFF10, 0x1D7CE, 0x0660, 0x0966]


def luhn_complete(body: str) -> str:
    """``body`` plus the check digit that makes it Luhn-valid."""
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError("unreachable")


@st.composite
def pans(draw: st.DrawFn) -> str:
    """A Luhn-valid 13–19 digit number (a card number as far as the rules go)."""
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    return luhn_complete(draw(st.sampled_from("3456")) + body[1:])


@st.composite
def written(draw: st.DrawFn, pan: str) -> str:
    """``pan`` as a person might write it: groups, separators, invisible characters, other digit forms."""
    out = []
    i = 0
    while i < len(pan):
        size = draw(st.integers(1, 6))
        group = pan[i : i + size]
        if draw(st.booleans()):
            base = draw(st.sampled_from(DIGIT_FORMS))
            group = "".join(chr(base + int(c)) for c in group)
        out.append(group)
        i += size
        if i < len(pan):
            out.append(draw(st.sampled_from(["", *SEPARATORS])))
            out.extend(draw(st.lists(st.sampled_from(INVISIBLE), max_size=3)))
    return "".join(out)


# Words around a number: no digits, and at least one space so it never glues to a digit.
words = st.text(st.characters(categories=["L", "P", "Zs"], exclude_characters="0123456789"), max_size=12).filter(
    lambda s: not any(unicodedata.category(c) == "Nd" for c in unicodedata.normalize("NFKC", s))
)


def digits_of(text: str) -> str:
    """Every digit of ``text`` after NFKC, as ASCII, invisible characters dropped."""
    out = []
    for ch in unicodedata.normalize("NFKC", text):
        if unicodedata.category(ch) == "Nd":
            out.append(str(unicodedata.decimal(ch)))
    return "".join(out)


def shows_pan(text: str, pan: str) -> bool:
    """True when ``text`` repeats ``pan`` in any of the ways the rules normalise."""
    return pan in digits_of(text)
