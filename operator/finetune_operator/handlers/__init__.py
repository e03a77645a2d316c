"""kopf handlers: thin functions that read an object, call the controller logic, and write status.

Importing this package registers every handler with kopf.
"""
from . import finetunejob  # noqa: F401
