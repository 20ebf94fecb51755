"""Pure facts about ports and addresses."""

from __future__ import annotations

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


def test_ephemeral_is_within_the_bounds_given() -> None:
    assert classifier.is_ephemeral(32768, (32768, 60999))
    assert classifier.is_ephemeral(60999, (32768, 60999))
    assert not classifier.is_ephemeral(32767, (32768, 60999))
    assert not classifier.is_ephemeral(61000, (32768, 60999))
