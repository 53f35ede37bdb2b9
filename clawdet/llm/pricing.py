"""What LLM tokens cost and how many each plan may use: the one place these figures live.

Prices are US dollars per million tokens (prompt, completion). A model missing from the table
is priced at DEFAULT_PRICE so the dashboard never shows a cost of zero for an unknown model.
"""

from __future__ import annotations

from decimal import Decimal

from db.models import PaymentMethod

PRICES_PER_MILLION: dict[str, tuple[Decimal, Decimal]] = {
    "grok-4": (Decimal("3.00"), Decimal("15.00")),
    "grok-3": (Decimal("3.00"), Decimal("15.00")),
    "grok-3-mini": (Decimal("0.30"), Decimal("0.50")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "sandbox-small": (Decimal("0.10"), Decimal("0.20")),
    "sandbox-large": (Decimal("1.00"), Decimal("2.00")),
}
DEFAULT_PRICE = (Decimal("3.00"), Decimal("15.00"))

# Monthly tokens (prompt + completion) per plan; None means unlimited.
MONTHLY_TOKEN_QUOTA: dict[str | None, int | None] = {
    PaymentMethod.FREE_BETA.value: 100_000,
    PaymentMethod.STRIPE.value: 5_000_000,
    PaymentMethod.PAYPAL.value: 5_000_000,
    None: 0,  # no plan: no proxy use
}
WARNING_PERCENT = 80


def cost(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    prompt_price, completion_price = PRICES_PER_MILLION.get(model, DEFAULT_PRICE)
    return (prompt_price * prompt_tokens + completion_price * completion_tokens) / Decimal(1_000_000)


def monthly_quota(payment_method: str | None, paid: bool) -> int | None:
    return MONTHLY_TOKEN_QUOTA.get(payment_method if paid else None, 0)
