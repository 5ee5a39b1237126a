"""State kept beside the warehouse: ledger of confirmed hashes, rejects, state versions."""
