"""How Deep-VRM learns: the two-stage recipe through transformers.Trainer and PEFT LoRA."""
