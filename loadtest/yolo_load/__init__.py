"""Pieces of the locustfile that need no running locust: the image mix, the load shapes and the SLO check.

They are plain functions so that tests/unit can pin them; loadtest/locustfile.py wires them to locust.
"""
