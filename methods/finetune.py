"""The fine-tuning control: the trained baseline fine-tuned exactly as the compressing
methods fine-tune (the budget's fine-tuning epochs, from its fine-tuning learning rate),
with nothing compressed.

Why: a method that fine-tunes after compressing also gives the model those epochs of extra
training. On CamVid at `quick`, k-means (57.4 % mIoU), QAT W8A8 (57.1 %) and 50 %
unstructured pruning (56.9 %) all scored above the 55.2 % baseline they started from;
extra training alone may account for that. Read a fine-tuned row against this row, not
only against `none`, to see what compressing cost or bought (ShrinkBench's point: methods
compared at unequal training budgets are not compared).
"""

from bench.method import Method, register_method


@register_method("finetune", family="control")
class FinetuneControl(Method):
    version = 1

    def finetune_epochs(self, ctx) -> int:
        return ctx.budget.finetune_epochs
