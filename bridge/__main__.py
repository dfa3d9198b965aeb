"""``python -m bridge`` is ``consul-xds-bridge``."""

from .cli import run

run()
