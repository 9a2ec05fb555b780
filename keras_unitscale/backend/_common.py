"""The name of the running backend, which every module of this package branches on.
"""

import keras


def backend_name():
    return keras.backend.backend()
