"""shouwang."""
