"""WebSockets: one ASGI session (:mod:`fulmen.websockets.session`) behind two sans-I/O engines."""
