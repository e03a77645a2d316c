"""Pure builders: FineTuneJob (+ operator settings) in, child manifests out. No I/O, clock or randomness.

One module per child kind; handlers create what these return under fixed names, so a restarted
operator finds what it launched instead of launching it again.
"""
