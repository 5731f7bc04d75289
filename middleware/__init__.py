"""Rate limiting built on statekit's ``increment`` and compare-and-set, and its framework mounts.

``Rate`` and ``RateLimiter`` (strategies ``fixed``, ``sliding``, ``gcra``) work on any statekit
storage; ``RateLimitMiddleware`` guards bot handlers; ``RetryAfterGate`` honours Telegram's
``retry_after`` across processes. Framework mounts live in ``middleware.aiogram`` and
``middleware.pyrogram`` (imported on demand, so neither framework is required).
"""

from middleware.handler import RateLimitMiddleware, chat_id_of, user_id_of
from middleware.limiter import RateLimiter
from middleware.outbound import RetryAfterGate, retry_after_of
from middleware.rate import Rate, RateLimitResult
from middleware.strategies import GCRA, FixedWindow, SlidingWindow, Strategy

__all__ = [
    "FixedWindow",
    "GCRA",
    "Rate",
    "RateLimitMiddleware",
    "RateLimitResult",
    "RateLimiter",
    "RetryAfterGate",
    "SlidingWindow",
    "Strategy",
    "chat_id_of",
    "retry_after_of",
    "user_id_of",
]
