"""The studies' paired statistics: the t quantile without scipy, the paired interval, and the
words a report may use for it."""

import math

import pytest

from studies.stats import paired_difference, regularized_beta, t_cdf, t_quantile, verdict_words


@pytest.mark.parametrize("df,value", [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262),
                                      (30, 2.042)])
def test_t_quantile_matches_the_tables(df, value):
    assert t_quantile(0.975, df) == pytest.approx(value, abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-value, abs=5e-4)


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_matches_closed_forms(p):
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    q = 2 * p - 1  # df = 2: P(T <= t) = 1/2 + t / (2 √(2 + t²))
    assert t_quantile(p, 2) == pytest.approx(q * math.sqrt(2 / (1 - q * q)), rel=1e-9)
    assert t_quantile(0.5, 7) == 0.0
    assert t_cdf(t_quantile(p, 13), 13) == pytest.approx(p, abs=1e-12)


def test_regularized_beta_closed_forms():
    for x in (0.0, 0.1, 0.37, 0.5, 0.93, 1.0):
        assert regularized_beta(x, 2.5, 1) == pytest.approx(x**2.5, abs=1e-13)
        assert regularized_beta(x, 1, 3.5) == pytest.approx(1 - (1 - x) ** 3.5, abs=1e-13)
        assert (regularized_beta(x, 4.5, 0.5) + regularized_beta(1 - x, 0.5, 4.5)
                == pytest.approx(1, abs=1e-13))
    assert regularized_beta(0.5, 7, 7) == pytest.approx(0.5, abs=1e-13)
    with pytest.raises(ValueError):
        regularized_beta(1.5, 1, 1)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_paired_difference_hand_case():
    # differences 1, 2, 3: mean 2, sd 1, t_{0.975, 2} = 0.95 √(2 / 0.0975)
    res = paired_difference([1.5, 2.5, 3.5], [0.5, 0.5, 0.5])
    half = 0.95 * math.sqrt(2 / 0.0975) / math.sqrt(3)
    assert res.n == 3 and res.mean == pytest.approx(2)
    assert res.interval == pytest.approx((2 - half, 2 + half))
    mean, interval, n = paired_difference({0: 1.0, 1: 3.0}, {1: 1.0, 0: 0.0})  # by seed
    assert (mean, n) == (1.5, 2)
    assert interval == pytest.approx((1.5 - 12.7062047 * 0.5, 1.5 + 12.7062047 * 0.5))
    one = paired_difference([0.7], [0.6])
    assert one.interval == (-math.inf, math.inf) and verdict_words(one.interval) == "not shown"


def test_paired_difference_rejects_unpaired_values():
    with pytest.raises(ValueError, match="seeds differ"):
        paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 2: 2.0})
    with pytest.raises(ValueError, match="3 values paired with 2"):
        paired_difference([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="two mappings"):
        paired_difference({0: 1.0}, [1.0])
    with pytest.raises(ValueError, match="no pairs"):
        paired_difference([], [])


def test_verdict_words():
    assert verdict_words((0.1, 0.9)) == "ahead"
    assert verdict_words((-0.9, -0.1)) == "behind"
    assert verdict_words((0.1, 0.2), margin=0.5) == "ahead"  # excluding 0 comes first
    assert verdict_words((-0.3, 0.4)) == "not shown"
    assert verdict_words((-0.3, 0.4), margin=0.5) == "level"
    assert verdict_words((-0.3, 0.6), margin=0.5) == "not shown"  # sticks out of the margin
    assert verdict_words((0.0, 0.0), margin=0.0) == "level"
    with pytest.raises(ValueError):
        verdict_words((0.4, -0.3))
    with pytest.raises(ValueError):
        verdict_words((-0.3, 0.4), margin=-1)
