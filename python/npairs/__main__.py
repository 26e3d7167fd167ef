"""python -m npairs: prints npairs.show_config(), what a bug report needs."""

from ._config import show_config

show_config()
