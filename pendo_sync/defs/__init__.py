"""The project's defs folder (dg): the demo's PendoSyncComponent instance, in pendo/defs.yaml."""
