"""The hamr command line (typer + rich)."""
