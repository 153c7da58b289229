"""The protocol floor, under :mod:`fulmen.http` and :mod:`fulmen.websockets`: what every connection
protocol shares, whatever it speaks.

- :mod:`~fulmen.protocols.server_protocol`: ``ServerProtocol``, the base of every protocol: the
  configuration and application, the server's shared state, the application's tasks, the scope
  template, the idle timer, write pause/resume, and the two calls the server makes on every
  connection (``shutdown()``, ``stop_keep_alive()``).
- :mod:`~fulmen.protocols.response_rules`: the ASGI response rules, stated once (message order,
  statuses, header names and values, bodies that are not sent, Content-Length), and
  ``ASGIExchange``, which runs the application by them.
- :mod:`~fulmen.protocols.output`: ``ConnectionOutput``, the one output path of an HTTP/1.1
  connection (the loop turn's corked responses, the held one, the only write and close calls).
- :mod:`~fulmen.protocols.flow_control`: back-pressure in both directions.
"""
