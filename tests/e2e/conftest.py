"""End-to-end tests: the console served by uvicorn, driven by Playwright in Debian's Chromium.

The shared test helpers live one folder up; make them importable from here. Whether a test's
call failed is kept on its item, so that the ``page`` fixture can save a screenshot of a failing
test (``artifacts/screenshots/failed-<test>.png``) before it closes the page."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.call_failed = report.failed  # type: ignore[attr-defined]
