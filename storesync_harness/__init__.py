"""Harness for demos, end-to-end tests, benchmarks and fault trials.

It runs the real hub and agent as separate processes on loopback and drives them like a POS and an
operator would. Nothing here is imported by the agent or the hub.
"""
