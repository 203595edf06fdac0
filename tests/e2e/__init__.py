"""Browser tests of the explorer page (headless Chromium against the real server)."""
