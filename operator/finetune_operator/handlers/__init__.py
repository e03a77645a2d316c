"""kopf handlers: thin functions that read an object, call pure code, and write status.

Importing this package registers every handler with kopf. The FineTuneJob and ModelVersion
controllers land here (one module each) as their issues are built.
"""
