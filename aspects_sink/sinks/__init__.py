"""
What a row is: one sink per file, each a small declarative class over :mod:`.columns` and :mod:`.base`,
and :mod:`.registry`, the one list of sinks with the queue and tables each declares.
"""
