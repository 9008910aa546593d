"""End-to-end tests: the console served by uvicorn, driven by Playwright in Debian's Chromium.

The shared test helpers live one folder up; make them importable from here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
