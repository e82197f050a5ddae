"""The SDK's version, in a module that imports nothing: the package's ``__init__`` exports it and the gRPC user
agent (``endpoints.py``) sends it, without either importing the other."""

__version__ = "0.1.0"
