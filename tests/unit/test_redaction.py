"""Redaction: no credential in a URL, a query string, a log line or a header value is ever shown."""

from __future__ import annotations

import logging

import pytest

from firehose.secret import RedactingFilter, is_credential_param, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://API:secret@127.0.0.1:9/events", "http://127.0.0.1:9/events"),
        ("https://h/s?api_key=abc&state=TX", "https://h/s?api_key=***&state=TX"),
        (
            "https://h/s?API_KEY=abc&X-Api-Key=d&partner_key=e&token=f&sig=g",
            "https://h/s?API_KEY=***&X-Api-Key=***&partner_key=***&token=***&sig=***",
        ),
        ("https://h/s?keyword=shoes&author=ann&signup=yes", "https://h/s?keyword=shoes&author=ann&signup=yes"),
        ("http://[::1", "http://[::1"),
    ],
)
def test_urls_lose_user_info_and_credential_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_lead_data_in_query_values_is_hidden_when_asked() -> None:
    assert redact_url("https://h/s?email=a%40b.c&api_key=x", query_values=True) == "https://h/s?email=***&api_key=***"


def test_lead_fields_are_not_taken_for_credentials() -> None:
    assert not any(map(is_credential_param, ("keyword", "author", "signup_source", "email", "monkeyface")))
    assert all(map(is_credential_param, ("api_key", "apiKey", "access_token", "client_secret", "password", "key")))


def test_free_text_and_log_lines_are_cleaned() -> None:
    line = "GET http://API:pw@127.0.0.1:8/events?api_key=k1&after_id=6a Authorization: Basic QVBJOnB3"
    cleaned = redact_text(line)
    assert "pw@" not in cleaned and "k1" not in cleaned and "QVBJOnB3" not in cleaned and "after_id=6a" in cleaned
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: %s "%s"', ("GET", line), None)
    RedactingFilter().filter(record)
    assert "pw@" not in record.getMessage() and "k1" not in record.getMessage()


@pytest.mark.parametrize(
    "name",
    ["auth[token]", "credentials[api_key]", "X-Amz-Signature", "AWSAccessKeyId", "access_key_id", "passphrase",
     "jwt", "bearer", "api_key\x00"],
)  # fmt: skip
def test_credential_params_in_other_shapes_are_recognised(name: str) -> None:
    assert is_credential_param(name)


def test_a_token_echoed_without_its_header_name_is_hidden() -> None:
    assert redact_text("refused Basic QVBJOlRPUFNFQ1JFVA== for /x") == "refused Basic *** for /x"
