"""Resilience: retry policies, circuit breakers, bulkheads."""
