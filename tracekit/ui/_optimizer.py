"""placeholder during development"""
from typing import Any


def routes(app: Any, reader: Any) -> None:
    return None
