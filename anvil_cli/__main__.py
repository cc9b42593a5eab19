"""`python -m anvil_cli` runs the CLI."""

from anvil_cli.cli import main

if __name__ == "__main__":
    main()
