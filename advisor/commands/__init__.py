"""The subcommands: one module per `advisor` command, each a thin layer over `tuner`."""
