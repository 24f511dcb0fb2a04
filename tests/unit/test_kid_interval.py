"""Issue 12 item 13: KID's interval when the subset size equals N (every subset holds every sample)."""

import numpy as np
import pytest

from cgmbench.metrics.kid import kernel_inception_distance, kid_bootstrap_ci
from cgmbench.scoring.harness import kid_entry


class _Feats:
    def __init__(self, features):
        self.features = features


def _draw(rs, n, shift=0.0, d=8):
    return rs.normal(size=(n, d)) + shift


def test_subsets_of_all_rows_have_zero_spread_and_the_entry_reports_a_real_interval():
    rs = np.random.RandomState(0)
    ref, fake = _draw(rs, 60), _draw(rs, 60, 0.4)
    mean, std = kernel_inception_distance(ref, fake, num_subsets=20, subset_size=60)
    assert std < 1e-12  # the defect: one subset in disguise
    entry = kid_entry(_Feats(fake), _Feats(ref))
    lo, hi = entry["ci95"]
    assert lo < entry["value"] < hi and hi - lo > 0.05 * abs(entry["value"])
    assert "bootstrap over samples" in entry["ci_method"]


def test_bootstrap_width_matches_the_spread_over_independent_sample_sets():
    """Independent reference: draw 40 fresh sample sets from the same distribution; the KID values' spread
    (2 x 1.96 sd) must agree with the bootstrap interval of one set within a factor of 2."""
    rs = np.random.RandomState(1)
    ref = _draw(rs, 300)
    kids = [kernel_inception_distance(ref, _draw(rs, 100, 0.3), num_subsets=10, subset_size=100, seed=k)[0]
            for k in range(40)]
    true_width = 2 * 1.96 * np.std(kids, ddof=1)
    widths = []
    for k in range(5):
        lo, hi = kid_bootstrap_ci(ref, _draw(rs, 100, 0.3), subset_size=100, n_boot=100, seed=k)
        widths.append(hi - lo)
    assert 0.5 < np.median(widths) / true_width < 2.0, (widths, true_width)


def test_entries_with_subsets_smaller_than_n_keep_the_subset_interval():
    rs = np.random.RandomState(2)
    ref, fake = _draw(rs, 1500), _draw(rs, 1200, 0.2)
    entry = kid_entry(_Feats(fake), _Feats(ref))
    assert entry["subset_size"] == 1000 and "ci_method" not in entry
    assert entry["ci95"] == pytest.approx([entry["value"] - 1.96 * entry["stderr"], entry["value"] + 1.96 * entry["stderr"]])
