"""The console's tests: a real ``ratemw control``, real Redis, two real limiter
processes and Chromium driven by Playwright (conftest.py)."""
