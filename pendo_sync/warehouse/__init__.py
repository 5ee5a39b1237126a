"""Warehouse access: engines, discovery, slices and the SQL that hashes rows."""
