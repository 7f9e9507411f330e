"""The flows: one module per command (``vnexport <command>``), each with an options dataclass
and ``run(options, log) -> result``. The CLI and the demo call these and nothing else."""
