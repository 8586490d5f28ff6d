"""The HTTP side of Cadenza (``cadenza serve``): authentication now, the FastAPI app later.

Nothing here is imported by ``cadenza`` itself, and this package imports nothing eagerly, so
Cadenza runs without the ``server`` extra (FastAPI, PyJWT) installed."""
