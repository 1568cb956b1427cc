"""The phantom says where it put its opacities, without changing what it draws."""

import numpy as np
import pytest

from components.pneumonia import phantom

pytestmark = pytest.mark.unit


def test_render_with_opacities_draws_the_same_image_and_names_each_opacity():
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    for pneumonia in (True, False, True):
        picture, opacities = phantom.render_with_opacities(a, 96, 80, pneumonia)
        np.testing.assert_array_equal(picture, phantom.render(b, 96, 80, pneumonia))
        assert (1 <= len(opacities) <= 3) if pneumonia else opacities == []
        for y, x, sigma in opacities:
            assert 0 < y < 1 and 0 < x < 1 and 0.06 <= sigma <= 0.1
            row, col = int(y * 96), int(x * 80)
            yy, xx = np.mgrid[:96, :80]
            distance = np.hypot(yy / 96 - y, (xx / 80 - x) * 80 / 96)
            centre, ring = picture[distance < sigma / 3].mean(), picture[(distance > 2.5 * sigma)
                                                                          & (distance < 3 * sigma)].mean()
            assert centre > ring + 0.02, (row, col)  # a bright blob is there
