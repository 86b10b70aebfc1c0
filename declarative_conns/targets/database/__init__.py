"""The database target."""
