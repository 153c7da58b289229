"""WebSockets, reached by an HTTP/1.1 upgrade: one ASGI session (:mod:`fulmen.websockets.session`)
on the protocol floor, behind two sans-I/O engines (:mod:`~fulmen.websockets.websockets_impl`,
:mod:`~fulmen.websockets.wsproto_impl`) and one frame fast path (:mod:`~fulmen.websockets.frames`)."""
