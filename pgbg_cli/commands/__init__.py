"""One module per command group; each has ``register(app)``."""

# Each command, and the module of this package whose register() defines it, in the order
# --help lists them. Every command connects to the server. (Imports nothing: the console
# script reads it before Typer loads.)
COMMANDS: dict[str, str] = {
    "launch": "launch",
    "wait": "jobs",
    "cancel": "jobs",
    "detach": "jobs",
    "show": "jobs",
    "list": "jobs",
    "fanout": "fanout",
    "capacity": "capacity",
    "stats": "stats",
    "prune": "stats",
    "settings": "stats",
    "init": "admin",
    "grant": "admin",
    "revoke": "admin",
    "dispatch": "admin",
    "doctor": "doctor",
}
