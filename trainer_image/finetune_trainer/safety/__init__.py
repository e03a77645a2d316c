"""The data-safety checks of the validate pod (spec.dataSafety), all offline and on CPU.

One module per check (pii, secrets, special_tokens, near_duplicates, cleaning, moderation) and
gate.Gate, which runs them over every row (Contract A, see gate.py) and reports counts and line
numbers only. Imports are lazy (Presidio takes seconds to import): only enabled checks load.
"""
