"""Reports, tables and pictures."""
