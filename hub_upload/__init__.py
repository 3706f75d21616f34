"""How Deep-VRM ships: Hub export (self-contained remote code, model card) and upload."""
