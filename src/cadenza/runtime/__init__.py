"""The runtime: the engine, its workers, and the execution of runs."""
