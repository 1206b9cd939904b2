"""Subcommands of the `shouwang` console command."""
