"""Pendo: field types and coercion, the async client, and the local emulator."""
