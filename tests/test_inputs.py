"""The port-spec parser: what users type for ports, good and bad."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portinspect.errors import UsageError
from portinspect.inputs import parse_port, parse_port_spec, parse_range


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8000", {8000}),
        (" 8000 ", {8000}),
        ("8000-8003", {8000, 8001, 8002, 8003}),
        ("8000,8080", {8000, 8080}),
        ("8000,8080,9000-9001", {8000, 8080, 9000, 9001}),
        ("1", {1}),
        ("65535", {65535}),
        ("7000-7000", {7000}),
    ],
)
def test_valid_specs(spec: str, expected: set[int]) -> None:
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "0",
        "65536",
        "-1",
        "abc",
        "80x",
        "",
        " ",
        "8000-7000",
        "1e3",
        "8000.0",
        "0x1f90",
        "9" * 40,
        "８０００",  # full-width digits are digits to str.isdigit(), not a port
        "٨٠٠٠",  # Arabic-Indic digits
        "80\x0000",
        "8000,",
        ",8000",
        "8000--8001",
        "+8000",
    ],
)
def test_invalid_specs_are_usage_errors_with_one_line(spec: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_port_spec(spec)
    message = str(info.value)
    assert "\n" not in message
    assert len(message) < 200


def test_reversed_range_names_both_ends() -> None:
    with pytest.raises(UsageError, match="8000 is greater than 7000"):
        parse_range("8000-7000")


def test_error_message_escapes_control_characters() -> None:
    with pytest.raises(UsageError) as info:
        parse_port("\x1b[31m80")
    assert "\x1b" not in str(info.value)


@given(st.integers(min_value=1, max_value=65535))
def test_every_valid_port_round_trips(port: int) -> None:
    assert parse_port(str(port)) == port
    assert parse_port_spec(str(port)) == {port}


@given(st.integers(min_value=1, max_value=65535), st.integers(min_value=0, max_value=50))
def test_ranges_hold_exactly_their_ports(low: int, width: int) -> None:
    high = min(65535, low + width)
    assert parse_port_spec(f"{low}-{high}") == set(range(low, high + 1))


@given(st.text(max_size=12))
def test_any_text_parses_or_raises_usage_error(text: str) -> None:
    try:
        ports = parse_port_spec(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
    else:
        assert ports
        assert all(1 <= p <= 65535 for p in ports)
        # Only ASCII digits, commas, dashes and spaces can make a valid spec.
        assert set(text) <= set("0123456789,- \t")


@given(st.integers().filter(lambda n: n < 1 or n > 65535))
def test_out_of_range_integers_are_refused(number: int) -> None:
    with pytest.raises(UsageError):
        parse_port(str(number))
