"""Fixtures shared by the method tests."""

import pytest


@pytest.fixture
def shared_results(tmp_path_factory):
    """One results directory for the whole session, so the distillation tests (kd, at,
    cwd, cheapconv) train each tiny baseline and teacher once between them; a module that
    needs its own directory defines its own `shared_results`."""
    return tmp_path_factory.getbasetemp() / "distill-results"
