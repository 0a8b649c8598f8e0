"""The lean read path's Signature Version 4 equals botocore's own, for any key, version and credentials.

botocore is the reference: its ``S3SigV4Auth`` signs the same GET, and the two ``Authorization`` headers
must be identical at the same moment (read back from botocore's ``X-Amz-Date``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from firehose.archive.s3 import SigV4, encode_key

keys = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=60)


def botocore_authorization(
    credentials: Credentials, region: str, host: str, path: str, query: str
) -> tuple[str, datetime]:
    # With payload signing off in its S3 config, botocore signs UNSIGNED-PAYLOAD too.
    request = AWSRequest(method="GET", url=f"https://{host}{path}" + (f"?{query}" if query else ""))
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(credentials, "s3", region).add_auth(request)
    moment = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return str(request.headers["Authorization"]), moment


@settings(max_examples=200, deadline=None)
@given(
    key=keys,
    version=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
    token=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    region=st.sampled_from(["us-east-1", "eu-west-2", "ap-southeast-1"]),
    path_style=st.booleans(),
)
def test_signature_equals_botocores(
    key: str, version: str | None, token: str | None, region: str, path_style: bool
) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    host = "127.0.0.1:8333" if path_style else "bucket.s3.amazonaws.com"
    path = ("/bucket/" if path_style else "/") + encode_key(key)
    query = f"versionId={quote(version, safe='-_.~')}" if version else ""
    expected, moment = botocore_authorization(credentials, region, host, path, query)
    headers = dict(SigV4(credentials, region).headers(host, path, query, now=moment))
    assert headers["Authorization"] == expected
    assert headers.get("x-amz-security-token") == token


def test_the_clock_read_once_a_second_signs_as_the_moment_itself() -> None:
    """Without ``now``, the signer formats the time once per second and reuses it: the headers equal those for
    that very second, across a change of second too."""
    import time

    signer = SigV4(Credentials("AKID", "secret"), "us-east-1")
    for _ in range(3):
        before = int(time.time())
        got = signer.headers("bucket.s3.amazonaws.com", "/events/a.json")
        after = int(time.time())
        if before == after:
            assert got == signer.headers(
                "bucket.s3.amazonaws.com", "/events/a.json", now=datetime.fromtimestamp(before, UTC)
            )
        time.sleep(0.6)
