"""Shipped demo configuration and sample data generator."""
