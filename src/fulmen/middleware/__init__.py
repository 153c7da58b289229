"""ASGI middleware the server wraps around applications: proxy headers, ASGI 2, WSGI, tracing."""
