"""The bare no-op job raw RQ workers drain: a module that imports nothing, so a forking
worker's work-horse pays for no import of its own (as a preloaded job module would)."""


def noop() -> None:
    return None
