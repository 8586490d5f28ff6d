"""Caches for node caching (``compile(cache=...)``): any LangGraph ``BaseCache`` works."""
