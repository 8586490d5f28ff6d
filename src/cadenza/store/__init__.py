"""Stores: the Store protocol and its implementations."""
