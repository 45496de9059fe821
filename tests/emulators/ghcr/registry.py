"""The emulator's registry surface: ghcr.io's token service and OCI distribution ``/v2``."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from typing import Any
from urllib.parse import urlencode

from tests.emulators import images
from tests.emulators.ghcr.limits import Limits
from tests.emulators.ghcr.server import Request, Response, registry_error
from tests.emulators.ghcr.state import (
    _RANK,
    READ_SCOPES,
    Token,
    _Grant,
    _int,
    _Package,
    _Version,
)


class RegistryApi(Limits):
    """ghcr.io's ``/token`` and ``/v2`` (see the package docstring)."""

    def _www_authenticate(self, scope: str) -> dict[str, str]:
        return {
            "WWW-Authenticate": f'Bearer realm="{self.registry_url}/token",service="ghcr.io",'
            f'scope="{scope}"',
            "Docker-Distribution-API-Version": "registry/2.0",
        }

    def _grant(self, req: Request, name: str, action: str) -> _Grant:
        header = req.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        grant = self._grants.get(value.strip()) if scheme.lower() == "bearer" else None
        scope = f"repository:{name}:{'pull,push' if action == 'push' else 'pull'}"
        if grant is None:
            raise registry_error(
                401, "UNAUTHORIZED", "authentication required", self._www_authenticate(scope)
            )
        if action not in grant.access.get(name.lower(), set()):
            raise registry_error(403, "DENIED", "requested access to the resource is denied")
        return grant

    def _registry_package(self, name: str) -> _Package:
        owner, _, pkg = name.partition("/")
        package = self._packages.get((owner.lower(), pkg.lower()))
        if package is None or not pkg:
            raise registry_error(404, "NAME_UNKNOWN", "repository name not known to registry")
        return package

    def _r_token(self, req: Request) -> Response:
        header = req.headers.get("authorization", "")
        token: Token | None = None
        if header:
            scheme, _, credential = header.partition(" ")
            secret = ""
            if scheme.lower() == "basic":
                try:
                    secret = base64.b64decode(credential.strip()).decode().partition(":")[2]
                except (ValueError, UnicodeDecodeError):
                    secret = ""
            elif scheme.lower() == "bearer":
                secret = credential.strip()
            with self.lock:
                token = self._tokens.get(secret)
            if token is None:
                raise registry_error(401, "UNAUTHORIZED", "authentication required")
        access: dict[str, set[str]] = {}
        with self.lock:
            for scope in req.query.get("scope", []):
                parts = scope.split(":")
                if len(parts) != 3 or parts[0] != "repository":
                    continue
                repo, wanted = parts[1].lower(), set(parts[2].split(","))
                allowed = self._registry_access(token, repo)
                if token is None and "pull" in wanted and "pull" not in allowed:
                    raise registry_error(
                        403, "DENIED", "requested access to the resource is denied"
                    )
                access[repo] = allowed & wanted
            value = base64.b64encode(secrets.token_bytes(24)).decode()
            self._grants[value] = _Grant(token, access)
        return Response.json({"token": value})

    def _registry_access(self, token: Token | None, repo: str) -> set[str]:
        owner, _, name = repo.partition("/")
        package = self._packages.get((owner, name))
        allowed: set[str] = set()
        if package is not None and package.visibility == "public":
            allowed.add("pull")
        if token is None:
            return allowed
        role = token.role(package.owner if package else owner, package.name if package else name)
        if token.kind == "classic":
            can_read = bool(token.scopes & READ_SCOPES)
            can_write = "write:packages" in token.scopes
        else:
            can_read = token.packages_permission in ("read", "write")
            can_write = token.packages_permission == "write"
        if can_read and _RANK[role] >= 1:
            allowed.add("pull")
        if can_write and _RANK[role] >= 2:
            allowed.update({"pull", "push"})
        return allowed

    def _r_base(self, req: Request) -> Response:
        header = req.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        with self.lock:
            ok = scheme.lower() == "bearer" and value.strip() in self._grants
        if not ok:
            raise registry_error(
                401,
                "UNAUTHORIZED",
                "authentication required",
                self._www_authenticate("repository:user/image:pull"),
            )
        return Response.json({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    def _lookup(self, package: _Package, ref: str) -> _Version:
        vid = package.by_digest.get(ref) if ref.startswith("sha256:") else package.tags.get(ref)
        if vid is None:
            raise registry_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        return package.active[vid]

    def _r_manifest(self, req: Request) -> Response:
        name = req.match["name"]
        with self.lock:
            self._grant(req, name, "pull")
            package = self._registry_package(name)
            version = self._lookup(package, req.match["ref"])
            accept = req.headers.get("accept", "")
            accepted = {part.split(";")[0].strip() for part in accept.split(",") if part.strip()}
            if accepted and "*/*" not in accepted and version.media_type not in accepted:
                raise registry_error(
                    404,
                    "MANIFEST_UNKNOWN",
                    f"manifest unknown: stored as {version.media_type}, which the Accept "
                    "header does not list",
                )
            if req.method == "GET":
                version.downloads += 1
            data = version.data
            headers = {
                "Content-Type": version.media_type,
                "Docker-Content-Digest": version.digest,
                "Docker-Distribution-API-Version": "registry/2.0",
                "ETag": f'"{version.digest}"',
            }
        if req.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return Response(200, b"", headers)
        return Response(200, data, headers)

    def _r_put_manifest(self, req: Request) -> Response:
        name = req.match["name"]
        ref = req.match["ref"]
        media_type = req.headers.get("content-type", "").split(";")[0].strip()
        digest = images.sha256(req.body)
        if ref.startswith("sha256:") and ref != digest:
            raise registry_error(
                400, "DIGEST_INVALID", "provided digest did not match uploaded content"
            )
        try:
            children, subject, artifact_type = images.describe(req.body)
            body = json.loads(req.body)
        except ValueError as exc:
            raise registry_error(400, "MANIFEST_INVALID", "manifest invalid") from exc
        media_type = media_type or str(body.get("mediaType", images.OCI_MANIFEST))
        with self.lock:
            self._grant(req, name, "push")
            owner, _, pkg = name.partition("/")
            if not self.package_exists(owner, pkg):
                self.create_package(owner, pkg)
            package = self._package(owner, pkg)
            referenced = [body.get("config"), *(body.get("layers") or [])]
            for desc in referenced:
                if isinstance(desc, dict) and desc.get("digest") not in package.blobs:
                    if desc.get("mediaType") == images.OCI_EMPTY:
                        continue
                    raise registry_error(400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")
            tags = [] if ref.startswith("sha256:") else [ref]
            self._store(
                package,
                manifest=req.body,
                media_type=media_type,
                tags=tags,
                created=None,
                downloads=0,
                children=children,
                subject=subject,
                artifact_type=artifact_type,
            )
        headers = {
            "Location": f"/v2/{name}/manifests/{digest}",
            "Docker-Content-Digest": digest,
        }
        if subject is not None:
            headers["OCI-Subject"] = subject
        return Response(201, b"", headers)

    def _r_delete_manifest(self, req: Request) -> Response:
        with self.lock:
            self._grant(req, req.match["name"], "pull")
        raise registry_error(405, "UNSUPPORTED", "The operation is unsupported.")

    def _r_tags(self, req: Request) -> Response:
        name = req.match["name"]
        with self.lock:
            self._grant(req, name, "pull")
            package = self._registry_package(name)
            tags = sorted(package.tags)
        last = req.param("last")
        if last:
            tags = [t for t in tags if t > last]
        headers: dict[str, str] = {}
        n = _int(req.param("n"), 0)
        if n > 0 and len(tags) > n:
            tags = tags[:n]
            headers["Link"] = (
                f'</v2/{name}/tags/list?{urlencode({"n": n, "last": tags[-1]})}>; rel="next"'
            )
        return Response.json({"name": name, "tags": tags}, headers=headers)

    def _r_referrers(self, req: Request) -> Response:
        name = req.match["name"]
        if not self.referrers_api:
            raise registry_error(404, "NOT_FOUND", "not found")
        with self.lock:
            self._grant(req, name, "pull")
            package = self._registry_package(name)
            wanted = req.param("artifactType")
            manifests = []
            for version in package.newest_first():
                if version.subject != req.match["digest"]:
                    continue
                if wanted and version.artifact_type != wanted:
                    continue
                desc: dict[str, Any] = {
                    "mediaType": version.media_type,
                    "digest": version.digest,
                    "size": len(version.data),
                }
                if version.artifact_type:
                    desc["artifactType"] = version.artifact_type
                manifests.append(desc)
        body = {"schemaVersion": 2, "mediaType": images.OCI_INDEX, "manifests": manifests}
        return Response.json(body, headers={"Content-Type": images.OCI_INDEX})

    def _r_blob(self, req: Request) -> Response:
        name = req.match["name"]
        with self.lock:
            self._grant(req, name, "pull")
            package = self._registry_package(name)
            data = package.blobs.get(req.match["digest"])
        if data is None:
            raise registry_error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": req.match["digest"],
            "Content-Length": str(len(data)),
        }
        return Response(200, b"" if req.method == "HEAD" else data, headers)

    def _store_blob(self, name: str, data: bytes, digest: str) -> Response:
        if images.sha256(data) != digest:
            raise registry_error(
                400, "DIGEST_INVALID", "provided digest did not match uploaded content"
            )
        owner, _, pkg = name.partition("/")
        with self.lock:
            if not self.package_exists(owner, pkg):
                self.create_package(owner, pkg)
            self._package(owner, pkg).blobs[digest] = data
        return Response(
            201, b"", {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
        )

    def _r_upload_start(self, req: Request) -> Response:
        name = req.match["name"]
        with self.lock:
            self._grant(req, name, "push")
        digest = req.param("digest")
        if digest:
            return self._store_blob(name, req.body, digest)
        upload = str(uuid.uuid4())
        with self.lock:
            self._uploads[upload] = bytearray(req.body)
        return Response(
            202,
            b"",
            {
                "Location": f"/v2/{name}/blobs/uploads/{upload}",
                "Docker-Upload-UUID": upload,
                "Range": "0-0",
            },
        )

    def _r_upload_patch(self, req: Request) -> Response:
        name, upload = req.match["name"], req.match["uuid"]
        with self.lock:
            self._grant(req, name, "push")
            buffer = self._uploads.get(upload)
            if buffer is None:
                raise registry_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
            buffer.extend(req.body)
            size = len(buffer)
        return Response(
            202,
            b"",
            {
                "Location": f"/v2/{name}/blobs/uploads/{upload}",
                "Docker-Upload-UUID": upload,
                "Range": f"0-{max(0, size - 1)}",
            },
        )

    def _r_upload_put(self, req: Request) -> Response:
        name, upload = req.match["name"], req.match["uuid"]
        with self.lock:
            self._grant(req, name, "push")
            buffer = self._uploads.pop(upload, None)
        if buffer is None:
            raise registry_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        digest = req.param("digest")
        if not digest:
            raise registry_error(400, "DIGEST_INVALID", "digest parameter missing")
        buffer.extend(req.body)
        return self._store_blob(name, bytes(buffer), digest)
