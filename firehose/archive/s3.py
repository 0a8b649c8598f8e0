"""The S3 backend: the only module that uses boto3 and botocore.

botocore errors are translated here, once, into ``ArchiveError`` subclasses that name the bucket and key.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import html
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote_plus, urlsplit

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.handlers
import botocore.loaders
import botocore.session

from firehose.archive.base import (
    LifecycleRule,
    ObjectInfo,
    Once,
    PageWalk,
    RequestCount,
    RetentionSettings,
    S3Credential,
    request_prefix,
)
from firehose.errors import ArchiveAccessDenied, ArchiveError, ArchiveNotFound, ConfigError
from firehose.http import Answer, ObjectGetter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "403"}
_MISSING = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}


def translate(exc: Exception, *, bucket: str, key: str | None = None) -> ArchiveError | ConfigError:
    """One botocore error as a firehose error naming the bucket (and key)."""
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _DENIED:
            return ArchiveAccessDenied(f"{where}: access denied ({code}); check the credentials for this bucket")
        if code == "NoSuchBucket":
            return ArchiveNotFound(f"{where}: bucket {bucket} does not exist")
        if code in _MISSING:
            return ArchiveNotFound(f"{where}: no such key")
        message = exc.response.get("Error", {}).get("Message", "")
        return ArchiveError(f"{where}: {code} {message}".rstrip())
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        endpoint = urlsplit(str(exc.kwargs.get("endpoint_url", "")))
        return ArchiveError(f"{where}: cannot reach the S3 endpoint {endpoint.scheme}://{endpoint.netloc}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ConfigError(
            f"{where}: no AWS credentials found: map the bucket's credential_id in [credentials] (or use --credential),"
            " or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        )
    return ArchiveError(f"{where}: {type(exc).__name__}: {exc}")


_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _lifecycle_rule(rule: Any) -> LifecycleRule:
    """A lifecycle rule from GetBucketLifecycleConfiguration, whichever of its three prefix shapes it uses."""
    scope = rule.get("Filter") or {}
    prefix = scope.get("Prefix", scope.get("And", {}).get("Prefix", rule.get("Prefix", "")))
    expiration = rule.get("Expiration") or {}
    transitions = sorted(rule.get("Transitions") or [], key=lambda t: t.get("Days", 0))
    first = transitions[0] if transitions else {}
    return LifecycleRule(
        id=str(rule.get("ID", "")),
        enabled=rule.get("Status") == "Enabled",
        prefix=str(prefix or ""),
        expiration_days=expiration.get("Days"),
        expiration_date=expiration.get("Date"),
        noncurrent_expiration_days=(rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays"),
        transition_days=first.get("Days"),
        transition_class=first.get("StorageClass"),
    )


# Listing is bound by parsing, not by the network: botocore spends about 50 µs of CPU per key on its generic
# XML parse. So boto3 still signs, retries and sends ListObjectsV2, but a successful answer's body is taken
# raw before botocore parses it (and replaced by an empty result for botocore), and the few fields firehose
# needs are read from it directly. Error answers are left alone, so they parse and translate as usual.
_RAW_LISTING = "FirehoseRawListing"
_EMPTY_LISTING = b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult></ListBucketResult>'
_CONTENTS = re.compile(rb"<Contents>(.*?)</Contents>", re.S)
_KEY = re.compile(rb"<Key>(.*?)</Key>", re.S)
_LAST_MODIFIED = re.compile(rb"<LastModified>(.*?)</LastModified>")
_ETAG = re.compile(rb"<ETag>(.*?)</ETag>")
_SIZE = re.compile(rb"<Size>(\d+)</Size>")
_TRUNCATED = re.compile(rb"<IsTruncated>true</IsTruncated>")
_NEXT_TOKEN = re.compile(rb"<NextContinuationToken>(.*?)</NextContinuationToken>", re.S)


def _keep_raw_listing(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    if response_dict.get("status_code") != 200:
        return
    body = response_dict["body"]
    if not body.rstrip().endswith(b"</ListBucketResult>"):
        # A cut-off answer (a dropped connection): make it a 500 so botocore retries it, as its own check of
        # 200 answers (which this client switches off, below) would have.
        response_dict["status_code"] = 500
        return
    customized_response_dict[_RAW_LISTING] = body
    response_dict["body"] = _EMPTY_LISTING


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8")
    return html.unescape(text) if "&" in text else text


_URL_ENCODED = b"<EncodingType>url</EncodingType>"


def _url_key(raw: bytes) -> str:
    return unquote_plus(_text(raw))


def _etag(raw: bytes) -> str:
    # ETags arrive quoted, the quotes escaped as &quot; or &#34; by some servers.
    return raw.replace(b"&#34;", b"").replace(b"&quot;", b"").strip(b'"').decode()


def parse_listing(body: bytes, end_at: str | None = None) -> tuple[list[ObjectInfo], str | None]:
    """The objects of one ListObjectsV2 answer and its continuation token (None on the last page). With
    ``end_at``, the objects up to the first one past it, and no token: the rest of a page that runs past a
    range's end (a slice's) is not made into objects nobody will look at.

    Each field is found across the whole body in one pass (``findall`` runs in C); element order inside
    ``<Contents>`` differs between servers, so the fields are paired by position, and only when every object
    has all four. Otherwise each ``<Contents>`` is read on its own.
    """
    # botocore asks for EncodingType=url (keys may hold characters XML cannot carry) and decodes in its parser,
    # which this path skips: so the keys are decoded here, as botocore would (``+`` is a space).
    decode = _url_key if _URL_ENCODED in body else _text
    keys, sizes = _KEY.findall(body), _SIZE.findall(body)
    etags, modified = _ETAG.findall(body), _LAST_MODIFIED.findall(body)
    if len(keys) == len(sizes) == len(etags) == len(modified) == body.count(b"<Contents>"):
        names = [decode(key) for key in keys]
        wanted = len(names) if end_at is None else bisect.bisect_right(names, end_at) + 1  # and the first past it
        items = [
            ObjectInfo(key=name, size=int(size), etag=_etag(etag), last_modified=datetime.fromisoformat(when.decode()))
            for name, size, etag, when in zip(names[:wanted], sizes, etags, modified, strict=False)
        ]
    else:
        items = [_contents(match.group(1), decode) for match in _CONTENTS.finditer(body)]
    if end_at is not None and items and items[-1].key > end_at:
        return items, None  # the range ends in this page
    token = _NEXT_TOKEN.search(body) if _TRUNCATED.search(body) else None
    return items, _text(token.group(1)) if token else None


def _contents(chunk: bytes, decode: Callable[[bytes], str]) -> ObjectInfo:
    key, modified, etag, size = (
        _KEY.search(chunk),
        _LAST_MODIFIED.search(chunk),
        _ETAG.search(chunk),
        _SIZE.search(chunk),
    )
    return ObjectInfo(
        key=decode(key.group(1)) if key else "",
        size=int(size.group(1)) if size else 0,
        etag=_etag(etag.group(1)) if etag else "",
        last_modified=datetime.fromisoformat(modified.group(1).decode()) if modified else _EPOCH,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_LOADER: list[botocore.loaders.Loader] = []
_LOADER_LOCK = threading.Lock()


def _session(profile: str | None) -> botocore.session.Session:
    """A new SDK session (its own credentials chain and profile, as ever) sharing this process's one data loader:
    a session of its own read and parsed the SDK's data files (the S3 model, the endpoints) again, and a client
    took about 100 ms here; with the loader's cache, about 15 ms. A sliced run makes clients slice after slice in
    one worker process."""
    session = botocore.session.get_session()
    with _LOADER_LOCK:
        if _LOADER:
            session.register_component("data_loader", _LOADER[0])
        else:
            _LOADER.append(session.get_component("data_loader"))
    if profile:
        session.set_config_variable("profile", profile)
    # The user agent boto3's own session sends (servers' logs, and the tests, tell SDK requests from lean ones).
    session.user_agent_extra = f"Botocore/{session.user_agent_version}"
    session.user_agent_name, session.user_agent_version = "Boto3", boto3.__version__
    return session


def make_client(credential: S3Credential, *, max_pool_connections: int = 256) -> S3Client:
    """An SDK S3 client; path-style addressing when an endpoint is given (S3-compatible servers). Its pool keeps
    a connection for every listing thread ``--workers`` may run (a smaller pool drops and reopens them)."""
    session = _session(credential.profile)
    config = botocore.config.Config(
        max_pool_connections=max_pool_connections,
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        s3={"addressing_style": "path"} if credential.endpoint_url else {},
    )
    kwargs: dict[str, Any] = {"config": config}
    if credential.endpoint_url:
        kwargs["endpoint_url"] = credential.endpoint_url
    if credential.region:
        kwargs["region_name"] = credential.region
    if credential.access_key_id:
        kwargs["aws_access_key_id"] = credential.access_key_id
    if credential.secret_access_key:
        kwargs["aws_secret_access_key"] = credential.secret_access_key.reveal()
    # botocore's own client: boto3's session adds only its resource layer and transfer helpers, unused here.
    return cast("S3Client", session.create_client("s3", **kwargs))


def _open_client(credential: S3Credential, bucket: str) -> S3Client:
    try:
        return make_client(credential)
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigError(
            f"s3://{bucket}: AWS profile {credential.profile or exc.kwargs.get('profile')!r} "
            "is not in the AWS config files"
        ) from exc
    except (botocore.exceptions.BotoCoreError, ValueError) as exc:
        raise ConfigError(f"s3://{bucket}: cannot set up an S3 client: {type(exc).__name__}") from exc


# -- the lean read path -------------------------------------------------------------------------------------
# A GET through boto3 costs about 1 ms of CPU (its request pipeline, events and response parsing), more than the
# object's transfer. Reads go instead through ``ObjectGetter`` (http.client, a keep-alive connection per
# thread), signed here with Signature Version 4 from the credentials boto3 resolves. Anything that path does not
# understand (a redirect to another region, a 400) is asked again through boto3, which knows what to do.

_UNSIGNED = "UNSIGNED-PAYLOAD"
_SIGNED_BASE = "host;x-amz-content-sha256;x-amz-date"
_CODE = re.compile(rb"<Code>(.*?)</Code>")


class SigV4:
    """AWS Signature Version 4 for S3 GET requests, in headers, with an unsigned payload (a GET has none):
    https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html. The day's signing key is
    derived once and kept, so a signature is two SHA-256s and one HMAC."""

    def __init__(self, credentials: botocore.credentials.Credentials, region: str) -> None:
        self._credentials = credentials
        self._region = region
        self._keys: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()
        self._stamps = (-1, "", "")
        """(second, x-amz-date, day) of the latest request: formatting the time costs more than the signature's
        hashes, and a busy reader signs hundreds of requests in one second (replaced whole: no lock needed)."""

    def headers(self, host: str, path: str, query: str = "", *, now: datetime | None = None) -> list[tuple[str, str]]:
        """The headers that sign ``GET path?query`` for ``host``; ``path`` and ``query`` are URI-encoded as
        sent (``query`` sorted by name, as SigV4's canonical form wants)."""
        frozen = self._credentials.get_frozen_credentials()  # refreshes expiring credentials (roles, SSO)
        if now is None:
            second = int(time.time())
            if self._stamps[0] != second:
                moment = datetime.fromtimestamp(second, UTC)
                self._stamps = (second, moment.strftime("%Y%m%dT%H%M%SZ"), moment.strftime("%Y%m%d"))
            _, stamp, day = self._stamps
        else:
            stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = [("Host", host), ("x-amz-content-sha256", _UNSIGNED), ("x-amz-date", stamp)]
        signed = _SIGNED_BASE
        canonical_headers = f"host:{host}\nx-amz-content-sha256:{_UNSIGNED}\nx-amz-date:{stamp}\n"
        if frozen.token:
            headers.append(("x-amz-security-token", frozen.token))
            signed += ";x-amz-security-token"
            canonical_headers += f"x-amz-security-token:{frozen.token}\n"
        request = f"GET\n{path}\n{query}\n{canonical_headers}\n{signed}\n{_UNSIGNED}"
        scope = f"{day}/{self._region}/s3/aws4_request"
        digest = hashlib.sha256(request.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{digest}"
        signature = hmac.new(self._key(frozen.secret_key or "", day), to_sign.encode(), hashlib.sha256).hexdigest()
        authorization = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        headers.append(("Authorization", authorization))
        return headers

    def _key(self, secret: str, day: str) -> bytes:
        with self._lock:
            key = self._keys.get((secret, day))
            if key is None:
                key = ("AWS4" + secret).encode()
                for part in (day, self._region, "s3", "aws4_request"):
                    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
                self._keys = {(secret, day): key}  # only today's: a long run crosses midnight once
            return key


def encode_key(key: str) -> str:
    """A key as a URI path segment sequence, encoded once, as SigV4 signs it for S3 (``/`` kept)."""
    return quote(key, safe="/~")


def _proxied(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (which only boto3's path honours)."""
    host = urlsplit(url).hostname or ""
    proxies = urllib.request.getproxies()
    return bool(proxies.get(urlsplit(url).scheme)) and not urllib.request.proxy_bypass(host)


def _virtual_host_ok(bucket: str) -> bool:
    """A bucket name that works as a host name under TLS (no dots, DNS-compatible)."""
    return re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", bucket) is not None


class LeanReads:
    """Signed GETs of one bucket's objects through ``ObjectGetter``; ``None`` from ``get`` means "ask boto3"."""

    def __init__(self, bucket: str, endpoint_url: str, region: str, path_style: bool, signer: SigV4) -> None:
        parts = urlsplit(endpoint_url)
        if path_style or not _virtual_host_ok(bucket):
            self._host, self._base = parts.netloc, f"{parts.path.rstrip('/')}/{encode_key(bucket)}/"
        else:
            self._host, self._base = f"{bucket}.{parts.netloc}", f"{parts.path.rstrip('/')}/"
        self._getter = ObjectGetter(f"{parts.scheme}://{self._host}")
        self._signer = signer
        self._bucket = bucket

    def get(self, key: str, version_id: str | None = None) -> Answer | None:
        path = self._base + encode_key(key)
        query = f"versionId={quote(version_id, safe='-_.~')}" if version_id else ""
        target = path + (f"?{query}" if query else "")
        where = f"s3://{self._bucket}/{key}"
        answer = self._getter.get(target, lambda: self._signer.headers(self._host, path, query), where=where)
        if answer.status in (200, 403, 404) or answer.status >= 500:
            return answer
        return None  # a redirect, a 400 (another region, an unusual endpoint): boto3 knows what to do

    def close(self) -> None:
        self._getter.close()


def answer_error(answer: Answer, *, bucket: str, key: str) -> ArchiveError:
    """The error of a GET that did not answer 200, as ``translate`` words it."""
    found = _CODE.search(answer.body)
    code = found.group(1).decode("utf-8", "replace") if found else str(answer.status)
    where = f"s3://{bucket}/{key}"
    if answer.status == 403 or code in _DENIED:
        return ArchiveAccessDenied(f"{where}: access denied ({code}); check the credentials for this bucket")
    if code == "NoSuchBucket":
        return ArchiveNotFound(f"{where}: bucket {bucket} does not exist")
    if answer.status == 404 or code in _MISSING:
        return ArchiveNotFound(f"{where}: no such key")
    return ArchiveError(f"{where}: {code} (HTTP {answer.status})")


def _credentials(credential: S3Credential) -> botocore.credentials.Credentials | None:
    """The credentials boto3 would sign with: the mapped keys, else its own chain (environment, profile, role)."""
    if credential.access_key_id and credential.secret_access_key:
        return botocore.credentials.Credentials(credential.access_key_id, credential.secret_access_key.reveal())
    return _session(credential.profile).get_credentials()


class S3Store:
    """One S3 bucket."""

    def __init__(
        self,
        bucket: str,
        credential: S3Credential,
        *,
        client: S3Client | None = None,
        page_size: int = 1000,
        sdk_reads: bool = False,
    ) -> None:
        self.bucket = bucket
        self.page_size = page_size
        """Keys per ListObjectsV2 request: 1,000 is the most S3 returns."""
        self.url = f"s3://{bucket}"
        self.requests = RequestCount()
        self._client = client or _open_client(credential, bucket)
        self._credential = credential
        self._lean: Once[LeanReads | None] = Once(lambda: None if sdk_reads else self._lean_reads())
        events = self._client.meta.events
        events.register("before-parse.s3.ListObjectsV2", _keep_raw_listing)
        # botocore parses every 200 answer's whole body once more, looking for an error inside (S3 does that for
        # copies). This client makes no copies, and cut-off listings are caught above, so the second parse of
        # every listing page goes.
        check = getattr(botocore.handlers, "_handle_200_error", None)
        if check is not None:
            events.unregister("before-parse.s3.*", check)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def list(
        self, prefix: str = "", *, start_after: str | None = None, end_at: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        sent = request_prefix(prefix, start_after, end_at)

        def fetch(token: str | None, size: int) -> tuple[list[ObjectInfo], str | None]:
            self.requests.add("list")
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": sent, "MaxKeys": size}
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            try:
                response = self._client.list_objects_v2(**kwargs)
            except _ERRORS as exc:
                raise translate(exc, bucket=self.bucket) from exc
            return parse_listing(response[_RAW_LISTING], end_at)  # type: ignore[literal-required]

        return PageWalk(fetch, page_size=self.page_size, start_after=start_after, end_at=end_at, limit=limit)

    def _lean_reads(self) -> LeanReads | None:
        """The lean read path, set up on first use; None where only boto3 can go (a proxy, no credentials)."""
        endpoint = self._client.meta.endpoint_url
        credentials = None if _proxied(endpoint) else _credentials(self._credential)
        if credentials is None:
            return None
        s3_config: dict[str, Any] = getattr(self._client.meta.config, "s3", None) or {}
        path_style = s3_config.get("addressing_style") == "path"
        region = self._client.meta.region_name or "us-east-1"
        return LeanReads(self.bucket, endpoint, region, path_style, SigV4(credentials, region))

    def _lean_get(self, key: str, version_id: str | None = None) -> Answer | None:
        """A 200 answer from the lean path; None to ask boto3 instead; raises for a missing or refused object."""
        lean = self._lean.get()
        answer = lean.get(key, version_id) if lean is not None else None
        if answer is None or answer.status == 200:
            return answer
        raise answer_error(answer, bucket=self.bucket, key=key)

    def read(self, key: str) -> bytes:
        self.requests.add("get")
        answer = self._lean_get(key)
        if answer is not None:
            return answer.body
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except _ERRORS as exc:
            raise translate(exc, bucket=self.bucket, key=key) from exc

    def fetch(self, key: str, *, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        self.requests.add("get")
        lean = self._lean_get(key, version_id)
        if lean is not None:
            return lean.body, _info_of(key, lean)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            answer = self._client.get_object(**kwargs)
            body = answer["Body"].read()
        except _ERRORS as exc:
            raise translate(exc, bucket=self.bucket, key=key) from exc
        version = answer.get("VersionId")
        info = ObjectInfo(
            key=key,
            size=len(body),
            etag=str(answer.get("ETag", "")).strip('"'),
            last_modified=answer["LastModified"],
            version_id=version if version and version != "null" else None,
            retention_mode=answer.get("ObjectLockMode"),
            retain_until=answer.get("ObjectLockRetainUntilDate"),
        )
        return body, info

    def retention(self) -> RetentionSettings:
        notes: list[tuple[str, str]] = []

        def ask(setting: str, call: Any, absent: set[str]) -> Any:
            """The answer, {} when the setting is not there (``absent`` codes), None (with a note) otherwise."""
            try:
                return call(Bucket=self.bucket)
            except botocore.exceptions.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in absent:
                    return {}
                if code in _DENIED:
                    notes.append((setting, f"not readable with these credentials ({code})"))
                else:
                    notes.append((setting, f"not reported by this endpoint ({code or 'error'})"))
            except botocore.exceptions.BotoCoreError as exc:
                raise translate(exc, bucket=self.bucket) from exc
            return None

        versioning = ask("versioning", self._client.get_bucket_versioning, set())
        lock = ask(
            "object_lock",
            self._client.get_object_lock_configuration,
            {"ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"},
        )
        lifecycle = ask("lifecycle", self._client.get_bucket_lifecycle_configuration, {"NoSuchLifecycleConfiguration"})
        config = (lock or {}).get("ObjectLockConfiguration", {})
        default = config.get("Rule", {}).get("DefaultRetention", {})
        days = default.get("Days") or (default["Years"] * 365 if default.get("Years") else None)
        return RetentionSettings(
            kind="s3",
            versioning=(versioning.get("Status") or "Disabled") if versioning is not None else None,
            lock_enabled=config.get("ObjectLockEnabled") == "Enabled" if lock is not None else None,
            lock_mode=default.get("Mode"),
            lock_days=days,
            lifecycle=tuple(_lifecycle_rule(r) for r in lifecycle.get("Rules", [])) if lifecycle is not None else None,
            notes=tuple(notes),
        )

    def head(self, key: str) -> ObjectInfo | None:
        self.requests.add("head")
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            error = translate(exc, bucket=self.bucket, key=key)
            if isinstance(error, ArchiveNotFound) and "no such key" in str(error):
                return None
            raise error from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, bucket=self.bucket, key=key) from exc
        return ObjectInfo(
            key=key, size=head["ContentLength"], etag=head["ETag"].strip('"'), last_modified=head["LastModified"]
        )

    def write(self, key: str, data: bytes, *, if_absent: bool = True, content_type: str = "application/json") -> bool:
        self.requests.add("put")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data, "ContentType": content_type}
        if if_absent:
            kwargs["IfNoneMatch"] = "*"  # S3 conditional write: refused with 412 if the key exists
        try:
            self._client.put_object(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if if_absent and code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                return False
            raise translate(exc, bucket=self.bucket, key=key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, bucket=self.bucket, key=key) from exc
        return True

    def create(self) -> None:
        try:
            self._client.create_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                return
            raise translate(exc, bucket=self.bucket) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, bucket=self.bucket) from exc

    def close(self) -> None:
        if (lean := self._lean.made) is not None:
            lean.close()
        self._client.close()


def _info_of(key: str, answer: Answer) -> ObjectInfo:
    """What a GET's headers tell about the object (as boto3's ``get_object`` would have parsed them)."""
    headers = answer.headers
    version = headers.get("x-amz-version-id")
    until = headers.get("x-amz-object-lock-retain-until-date")
    modified = headers.get("last-modified")
    return ObjectInfo(
        key=key,
        size=len(answer.body),
        etag=str(headers.get("etag", "")).strip('"'),
        last_modified=parsedate_to_datetime(modified) if modified else _EPOCH,
        version_id=version if version and version != "null" else None,
        retention_mode=headers.get("x-amz-object-lock-mode"),
        retain_until=datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None,
    )
