"""`python -m anvil_cli` runs the CLI."""

from anvil_cli.entry import main

if __name__ == "__main__":
    main()
