"""Helpers the test modules share: importable code lives here, fixtures in conftest.py.

No test module imports another, nor a conftest (tests/test_suite_layout.py checks it): a helper
two test modules need moves here.
"""
