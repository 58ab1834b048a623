"""The Student t distribution without scipy: its CDF through the regularised incomplete beta
function, and its quantiles (for the confidence intervals of aggregate means).
"""
from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["t_cdf", "t_quantile"]


def _betacf(a: float, b: float, x: float) -> float:
    # Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4).
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        de = d * c
        h *= de
        if abs(de - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
           + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if math.isinf(df):
        return NormalDist().cdf(t)
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


_TQ_CACHE: dict = {}


def t_quantile(p: float, df: float) -> float:
    """Inverse of `t_cdf` to ~1e-12: Newton steps from the normal quantile, bisection as a guard."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if df <= 0 or math.isnan(df):
        return math.nan
    key = (p, df)
    if key in _TQ_CACHE:
        return _TQ_CACHE[key]
    if p < 0.5:
        q = -t_quantile(1.0 - p, df)
    elif p == 0.5:
        q = 0.0
    elif df > 1e4:  # incomplete beta loses digits here; Cornish-Fisher is exact to ~1e-13
        z = NormalDist().inv_cdf(p)
        q = 0.0 if math.isinf(df) else (z ** 3 + z) / (4 * df) + \
            (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df)
        q += z
    else:
        lo, hi = 0.0, 1.0
        while t_cdf(hi, df) < p:  # bracket the root; tails are heavy for small df
            lo, hi = hi, hi * 2.0
        q = min(max(NormalDist().inv_cdf(p), lo), hi)
        c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
        for _ in range(100):
            f = t_cdf(q, df) - p
            if f > 0:
                hi = q
            else:
                lo = q
            dens = c * (1.0 + q * q / df) ** (-(df + 1) / 2)
            step = f / dens if dens > 0 else math.inf
            nq = q - step
            if not lo < nq < hi:  # Newton left the bracket: bisect instead
                nq = 0.5 * (lo + hi)
            if abs(nq - q) < 1e-13 * max(1.0, abs(q)):
                q = nq
                break
            q = nq
    _TQ_CACHE[key] = q
    return q
