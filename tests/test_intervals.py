"""Split-conformal intervals on the log scale, by hand."""

import math

import numpy as np

from tasks.intervals import conformal_quantiles, interval_bounds, log_residuals


def test_conformal_quantiles_and_bounds_by_hand():
    residuals = np.array([0.1, -0.2, 0.3, -0.4])
    # ranks ceil(5 * level / 100): 50 -> 3rd smallest |r| = 0.3; 80 -> 4th = 0.4; 95 -> 5th: none, unbounded
    assert conformal_quantiles(residuals, [50, 80, 95]) == {50: 0.3, 80: 0.4, 95: math.inf}
    # an exact rank stays exact: 19 residuals, 95% -> rank 20 * 95 / 100 = 19, the widest
    assert conformal_quantiles(np.arange(1, 20) / 100, [95]) == {95: 0.19}
    lower, upper = interval_bounds(np.array([100.0]), math.log(2))
    np.testing.assert_allclose([lower[0], upper[0]], [50.0, 200.0])
    lower, upper = interval_bounds(np.array([100.0]), math.log(2), steps_ahead=4)  # sqrt(4) = 2 -> x4
    np.testing.assert_allclose([lower[0], upper[0]], [25.0, 400.0])
    np.testing.assert_allclose(log_residuals(np.array([200.0, 50.0]), np.array([100.0, 100.0])), [math.log(2), -math.log(2)])
