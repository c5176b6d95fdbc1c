"""streamdrift detectors: vectorized online drift detectors, pure numpy, no I/O.

Each detector watches D independent columns and is fed (B, D) float64 batches; NaN means
"no value in this row". Semantics are river's (0.26), checked value for value in the tests.
"""

from ._state import StateError
from .adwin import ADWIN
from .page_hinkley import PageHinkley

__all__ = ["ADWIN", "PageHinkley", "StateError"]
