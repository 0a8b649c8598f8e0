"""Runs LeadConduit's standard inbound module (npm ``leadconduit-default``) under Node for the parity tests."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from firehose.inbound import _js_int

HERE = Path(__file__).resolve().parent
CACHE = HERE.parents[1] / ".cache" / "node"
"""Where the package is installed (git-ignored), from the committed package.json and package-lock.json."""


class NodeUnavailable(RuntimeError):
    """Node, npm or the package could not be had: the parity test must fail, never skip."""


def install() -> Path:
    """The ``node_modules`` folder holding leadconduit-default, installed with ``npm ci`` if it is missing or the
    lock file changed (the only network this needs is the npm registry)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise NodeUnavailable(f"{tool} is not installed: the inbound parity test needs Node.js and npm")
    lock = (HERE / "package-lock.json").read_bytes()
    stamp = CACHE / "installed-lock.json"
    modules = CACHE / "node_modules"
    if stamp.exists() and stamp.read_bytes() == lock and (modules / "leadconduit-default" / "package.json").exists():
        return modules
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "package.json", CACHE / "package.json")
    shutil.copy(HERE / "package-lock.json", CACHE / "package-lock.json")
    # --ignore-scripts: a transitive package's postinstall would fetch data from elsewhere; the parse needs none.
    done = subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=CACHE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise NodeUnavailable(f"npm ci of leadconduit-default failed in {CACHE}:\n{done.stdout}\n{done.stderr}")
    stamp.write_bytes(lock)
    return modules


@dataclass(frozen=True)
class Request:
    """A submit request as it goes over the wire (headers include the Content-Length httpx sends)."""

    method: str
    uri: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    @classmethod
    def built(cls, method: str, uri: str, headers: dict[str, str], body: bytes | None) -> Request:
        """The request exactly as httpx would send it (so both sides see the same Content-Length)."""
        sent = httpx.Request(method, f"http://sandbox.test{uri}", headers=headers, content=body)
        # LeadConduit's handler hands the module canonical header names (inbound.js reads req.headers['Content-Type']).
        wire = {"-".join(p.capitalize() for p in k.split("-")): v for k, v in sent.headers.items() if k != "host"}
        return cls(method, uri, wire, body if "Content-Length" in wire else None)


def parse(modules: Path, requests: list[Request]) -> list[dict[str, Any]]:
    """What the module's ``request()`` returns for each request: ``{"ok": True, "fields": ...}`` or
    ``{"ok": False, "status": ..., "message": ...}``; numbers read as JavaScript doubles."""
    payload = [
        {
            "method": r.method,
            "uri": r.uri,
            "headers": r.headers,
            "body_base64": None if r.body is None else base64.b64encode(r.body).decode(),
        }
        for r in requests
    ]
    done = subprocess.run(
        ["node", str(HERE / "parse.js"), str(modules)],
        input=json.dumps(payload).encode(),
        capture_output=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise NodeUnavailable(f"tests/node/parse.js failed: {done.stderr.decode(errors='replace')}")
    results: list[dict[str, Any]] = json.loads(done.stdout, parse_int=_js_int)
    return results
