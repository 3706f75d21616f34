"""`DeepVRMTrainer`: transformers' Trainer with the three things Deep-VRM's recipe adds.

- The merger's own learning rate (the paper's recipe, configuration/recipes/stage*.yaml: 1e-6 for
  the merger/aligner, 1e-4 elsewhere):
  trainable parameters under a `.merger.` module get `merger_learning_rate`; the scheduler scales
  both groups alike.
- Evaluation scores what detection scores: the logits of the two answer tokens ("real", "fake") at
  the answer position, so `compute_metrics` receives `[N, 2]` logits and the 0/1 labels, for the
  chat model (LM objective) and the classification head alike. Evaluation batches always ask the
  default question (the one `deepvrm detect` asks), whatever the phrasing of the samples.
- `class_labels` (the 0/1 label of each sample) travels in LM batches for evaluation and is
  dropped before the training forward pass.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

from .collator import IGNORE_INDEX


class DeepVRMTrainer(Trainer):
    def __init__(
        self,
        *args,
        merger_learning_rate: float | None = None,
        answer_token_ids: list[int] | None = None,
        eval_data_collator=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.merger_learning_rate = merger_learning_rate
        self.answer_token_ids = list(answer_token_ids) if answer_token_ids is not None else None
        self.eval_data_collator = eval_data_collator

    # ------------------------------------------------------------------ optimiser
    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.merger_learning_rate is None or self.merger_learning_rate == self.args.learning_rate:
            return optimizer
        if any(group.get("deepvrm_group") == "merger" for group in optimizer.param_groups):
            return optimizer  # already split (create_optimizer runs again on resume)
        opt_model = self.model if model is None else model
        merger_ids = {id(p) for n, p in opt_model.named_parameters() if p.requires_grad and ".merger." in n}
        if not merger_ids:
            return optimizer
        new_groups = []
        for group in optimizer.param_groups:
            merger = [p for p in group["params"] if id(p) in merger_ids]
            if merger:
                group["params"] = [p for p in group["params"] if id(p) not in merger_ids]
                settings = {k: v for k, v in group.items() if k != "params"}
                new_groups.append({**settings, "params": merger, "lr": self.merger_learning_rate, "deepvrm_group": "merger"})
        optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
        for group in new_groups:
            optimizer.add_param_group(group)
        return optimizer

    # ------------------------------------------------------------------ training
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = {k: v for k, v in inputs.items() if k != "class_labels"}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    # ------------------------------------------------------------------ evaluation
    def get_eval_dataloader(self, eval_dataset=None):
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def answer_logits(self, model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """`[batch, 2]` answer-token logits and the 0/1 labels of a batch."""
        if "input_ids" not in inputs:  # the classification head
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            return model(**inputs).logits.float(), labels
        inputs = dict(inputs)
        labels = inputs.pop("class_labels")
        token_labels = inputs.pop("labels")
        # Logits at position t predict token t+1: the answer's first token is predicted one before it.
        answer_position = (token_labels != IGNORE_INDEX).int().argmax(-1) - 1
        outputs = model(**inputs, use_cache=False, logits_to_keep=answer_position.unsqueeze(1))
        logits = outputs.logits[:, -1]
        return logits[:, self.answer_token_ids].float(), labels

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            logits, labels = self.answer_logits(model, inputs)
            loss = nn.functional.cross_entropy(logits, labels, ignore_index=-1) if (labels >= 0).any() else None
        if prediction_loss_only:
            return loss.detach() if loss is not None else None, None, None
        return loss.detach() if loss is not None else None, logits.detach(), labels


__all__ = ["DeepVRMTrainer"]
