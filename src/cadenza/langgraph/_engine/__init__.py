"""The superstep executor behind the facade: pure step logic (``algo``), the run loop, the
checkpoint format, streaming and state inspection, each in its own module."""
