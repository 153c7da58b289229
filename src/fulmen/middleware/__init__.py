"""ASGI middleware the server wraps around applications (ASGI 2, WSGI, the trace-level message logger),
and ``ProxyHeadersMiddleware`` for applications served by another server (the forwarding rules
themselves are :mod:`fulmen.forwarding`)."""
