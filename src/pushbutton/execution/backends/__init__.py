"""Backends run bundles; they know nothing about tasks. See base.Backend; execution/factory.py
makes them."""
