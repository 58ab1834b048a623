"""Task functions for the streamed-registration tests: each records when it ran."""
import time


def stamp(i, **_):
    return {"t": time.time()}
