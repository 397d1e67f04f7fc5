"""Routing by concern: each module loads, decides (``domain``), stores and publishes."""
