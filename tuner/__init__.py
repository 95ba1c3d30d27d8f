"""The engine: search space, Optuna study, trial runner, data, models.

Importing this package (or its pure modules) loads neither torch nor textual.
"""

import logging

# bitsandbytes, which peft and transformers import where it is installed, looks on import for an optional CPU kernel
# on the hub; it and the `kernels` package warn wherever that kernel cannot be had, and bitsandbytes then uses its own.
for _quiet in ("bitsandbytes", "kernels"):
    logging.getLogger(_quiet).setLevel(logging.ERROR)
