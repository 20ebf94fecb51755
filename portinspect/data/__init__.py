"""Bundled static data: IANA service names, browser-unsafe ports."""
