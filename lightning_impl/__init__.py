"""lightning_impl."""

from shared.startup import quiet_while_starting

quiet_while_starting()
