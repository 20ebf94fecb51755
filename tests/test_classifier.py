"""Pure facts about ports and addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from portinspect import classifier
from portinspect.models import PortRange, Proto


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (1, PortRange.WELL_KNOWN),
        (80, PortRange.WELL_KNOWN),
        (1023, PortRange.WELL_KNOWN),
        (1024, PortRange.REGISTERED),
        (8000, PortRange.REGISTERED),
        (49151, PortRange.REGISTERED),
        (49152, PortRange.DYNAMIC),
        (65535, PortRange.DYNAMIC),
    ],
)
def test_iana_ranges(port: int, expected: PortRange) -> None:
    assert classifier.port_range(port) is expected


@pytest.mark.parametrize(
    ("address", "exposed"),
    [
        ("127.0.0.1", False),
        ("127.0.0.53", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.168.1.10", True),
        ("10.0.0.1", True),
        ("fe80::1%eth0", True),
        ("::ffff:10.1.2.3", True),
        ("not-an-address", True),
    ],
)
def test_exposure(address: str, exposed: bool) -> None:
    assert classifier.is_exposed(address) is exposed


def test_service_names_come_from_bundled_data() -> None:
    assert classifier.service_name(22, Proto.TCP) == "ssh"
    assert classifier.service_name(5432, Proto.TCP) == "postgresql"
    assert classifier.service_name(53, Proto.UDP) == "domain"
    assert classifier.service_name(47123, Proto.TCP) is None


@pytest.mark.skipif(
    not Path(classifier.LINUX_EPHEMERAL_FILE).exists(), reason="Linux only: reads /proc"
)
def test_ephemeral_range_is_the_kernels() -> None:
    low, high = map(int, Path(classifier.LINUX_EPHEMERAL_FILE).read_text().split())
    assert classifier.ephemeral_range() == (low, high)
    assert classifier.is_ephemeral(low)
    assert classifier.is_ephemeral(high)
    assert not classifier.is_ephemeral(low - 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32768\t60999\n", (32768, 60999)),
        ("1024 65535", (1024, 65535)),
        ("60999 32768", None),
        ("abc def", None),
        ("0 100", None),
        ("", None),
    ],
)
def test_range_file_parsing(text: str, expected: tuple[int, int] | None) -> None:
    assert classifier._parse_range_pair(text) == expected


def test_fallback_when_os_says_nothing_simulated_other_os(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: an OS with no readable range (Windows) falls back to 49152-65535."""
    classifier.ephemeral_range.cache_clear()
    monkeypatch.setattr(classifier.sys, "platform", "win32")
    try:
        assert classifier.ephemeral_range() == classifier.FALLBACK_EPHEMERAL
    finally:
        classifier.ephemeral_range.cache_clear()
