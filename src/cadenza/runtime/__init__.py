"""The runtime: engine, scheduler, execution context, run state and events."""
