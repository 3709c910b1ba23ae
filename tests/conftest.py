"""Hypothesis settings profiles for the whole test suite.

* ``ci`` (loaded when the ``CI`` environment variable is set, as CI services and ``.ci/run`` do): derandomized, so
  a CI run tests the same examples every time and a red build reproduces locally with ``CI=1``; no example
  database (nothing to carry between CI runs); ``print_blob`` prints the ``@reproduce_failure`` line of a failing
  example; a modest default example count keeps the property tests within the suite's time budget on a shared
  2-core machine.
* ``dev`` (otherwise): random exploration with the local example database (``.hypothesis/``, git-ignored), which
  replays a failing example first on the next run; a few more examples per test than CI.

``HYPOTHESIS_PROFILE=<name>`` picks a profile explicitly: ``ci`` off CI to replay a CI run, or ``thorough``
(200 examples per test, several minutes per file) to hunt for bugs after changing an op or an upsampler.

Both profiles set ``deadline=None``: the CPU is shared with other jobs, so per-example timing is noise, not a
bug. They only set defaults: a test's own ``@settings(max_examples=...)`` still wins (the older property tests in
test_carafe_op.py, test_ddf_up.py and test_sapa.py pin their counts that way).
"""
import os

import pytest
import torch

from hypothesis import HealthCheck, settings

settings.register_profile(
    'ci', max_examples=20, derandomize=True, database=None, deadline=None, print_blob=True,
    # The too_slow health check times data generation; on a loaded shared runner it measures machine load, not
    # the strategies (Hypothesis's own built-in CI profile suppresses it for the same reason).
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile('dev', max_examples=30, deadline=None, print_blob=True)
settings.register_profile('thorough', parent=settings.get_profile('dev'), max_examples=200)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE') or ('ci' if os.environ.get('CI') else 'dev'))


@pytest.fixture(scope='module')
def one_thread():
    """One intra-op thread for a module of tiny tensors: on shared cores the threads cost far more than they save
    (4x measured on the mm integration tests). Use with ``pytestmark = pytest.mark.usefixtures('one_thread')``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
