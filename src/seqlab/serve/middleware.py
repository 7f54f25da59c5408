"""Plain ASGI middleware: one JSON log line per request, bearer-token auth, and a body size limit.

Order, outside in: RequestLog -> BearerAuth -> BodyLimit -> the app, so even a
refused request is logged, and no unauthenticated body is ever read.
"""

import hmac
import json
import logging
import time
import uuid

log = logging.getLogger("seqlab.serve.requests")


def error_body(status: int, message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


async def send_error(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class RequestLog:
    """Logs id, method, path, status, bytes in/out and timings; the handler adds sizes in scope['state']['log']."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        rid = uuid.uuid4().hex[:16]
        info = {"id": rid}
        scope.setdefault("state", {})
        scope["state"]["log"] = info
        seen = {"status": 500, "in": 0, "out": 0, "first_byte": None}

        async def counting_receive():
            message = await receive()
            seen["in"] += len(message.get("body", b""))
            return message

        async def logging_send(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body":
                if seen["first_byte"] is None:
                    seen["first_byte"] = time.perf_counter() - t0
                seen["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, logging_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "(unmatched)"
            self.metrics.requests.labels(route=path, status=str(seen["status"])).inc()
            record = {"id": rid, "method": scope["method"], "path": scope["path"], "status": seen["status"],
                      "bytes_in": seen["in"], "bytes_out": seen["out"],
                      "first_byte_ms": round(seen["first_byte"] * 1000, 2) if seen["first_byte"] is not None else None,
                      "total_ms": round((time.perf_counter() - t0) * 1000, 2)}
            record.update({k: v for k, v in info.items() if k != "id"})
            log.info(json.dumps(record, ensure_ascii=False))


class BearerAuth:
    """Every path but /health and the web page needs `Authorization: Bearer TOKEN`, compared in constant time.

    The page (/ and its static files under /web/) holds no data and reaches the model only through the API;
    it must load without the header, which a browser cannot send on navigation, to ask for the token.
    """

    OPEN = {"/health", "/"}
    OPEN_PREFIX = "/web/"

    def __init__(self, app, token: str | None):
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.token is None or self._open(scope["path"]):
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, credential = given.partition(b" ")
        # compare_digest runs in time independent of where the bytes differ; both sides are compared whole
        ok = hmac.compare_digest(credential, self.token) and scheme.lower() == b"bearer"
        if not ok:
            body = error_body(401, "missing or wrong bearer token: send 'Authorization: Bearer TOKEN'",
                              "authentication_error", "invalid_token")
            return await send_error(send, 401, body, [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)

    def _open(self, path: str) -> bool:
        return path in self.OPEN or path.startswith(self.OPEN_PREFIX)


class BodyLimit:
    """Reads the whole body first (at most max_bytes) and answers 413 past it; the app gets it replayed."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending it all
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._too_large(send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send):
        body = error_body(413, f"the request body is larger than {self.max_bytes} bytes (--max-body-bytes)",
                          "invalid_request_error", "body_too_large")
        await send_error(send, 413, body)
