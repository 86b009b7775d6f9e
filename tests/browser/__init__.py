"""Browser tests (Playwright + Debian chromium); their own fixtures are in tests.browser.conftest."""
