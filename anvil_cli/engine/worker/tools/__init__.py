"""Tool calls: which tools run a command, how one runs (bounded), and the sandbox it runs in."""
