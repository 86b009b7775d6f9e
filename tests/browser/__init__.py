"""Browser tests (Playwright + Debian chromium). A package so its conftest is `browser.conftest`,
not a second top-level `conftest` that would shadow tests/conftest.py for `from conftest import`."""
