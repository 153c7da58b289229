"""The ``fastapi`` workload: the ``json`` workload's answer from a FastAPI route.

What a framework application costs on top of the server: routing, dependency resolution, the
response model's serialisation and Starlette's request and response objects. Kept out of
``apps.py`` so that the other workloads' servers do not import FastAPI (nor count its memory).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from benchmarks.apps import JSON_OBJECT

app = FastAPI()


@app.get("/")
async def root() -> dict[str, Any]:
    return JSON_OBJECT
