"""Forward/backward hooks that capture what linear layers see.

For ``y = W a + b`` the gradient of a sample's loss with respect to ``[W | b]``
is ``sum_t d_t [a_t, 1]^T`` over the sample's rows ``t`` (one row for a plain
MLP, several for sequence inputs or a layer called more than once). Keeping
the input activations ``a`` and output gradients ``d`` of one batch is enough
to form per-sample gradients, their projections, their dot products with any
direction, or their sums over groups -- without ever materialising a
``(batch, p)`` matrix unless asked to.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class HookCapture:
    """Context manager recording the inputs and outputs of the plan's hook blocks.

    Inside the context, run a forward pass and pass the summed per-sample loss
    to :meth:`rows`. It differentiates the loss with respect to the captured
    *outputs* only -- weight gradients are never formed, which saves about a
    third of an ordinary backward pass -- and returns, per block, the input
    activations ``A`` of shape ``(batch, rows, in_features)`` and output
    gradients ``D`` of shape ``(batch, rows, out)``. The bias column of ones
    is not materialised; see :meth:`LinearBlock.augment` and
    :meth:`LinearBlock.contract`. Convolutions give their unfolded patches
    as rows and normalisation layers their normalised inputs (each block
    says how, in ``activation_rows`` / ``gradient_rows``).
    """

    def __init__(self, blocks):
        self.blocks = blocks
        self._handles = []
        self._acts = [[] for _ in blocks]
        self._outputs = [[] for _ in blocks]
        self._enabled = True

    def __enter__(self):
        for index, block in enumerate(self.blocks):
            self._handles.append(block.module.register_forward_hook(self._hook(index)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._clear()
        return False

    def _clear(self):
        self._acts = [[] for _ in self.blocks]
        self._outputs = [[] for _ in self.blocks]

    @contextmanager
    def paused(self):
        """Ignore forward calls (e.g. the ``torch.func`` pass over the same module)."""
        self._enabled = False
        try:
            yield
        finally:
            self._enabled = True

    def _hook(self, index):
        def hook(module, inputs, output):
            if not self._enabled:
                return
            self._acts[index].append(inputs[0].detach())
            self._outputs[index].append(output)

        return hook

    def rows(self, loss: torch.Tensor):
        """Per block ``(A, D)``: the batch first, all rows of a sample in dim 1."""
        outputs = [out for per_block in self._outputs for out in per_block]
        grads = iter(torch.autograd.grad(loss, outputs, allow_unused=True))
        result = []
        for block, acts in zip(self.blocks, self._acts):
            if not acts:
                raise RuntimeError(
                    f"Linear layer {block.module_name!r} was not called in this batch; "
                    "its gradient cannot be captured."
                )
            a_parts, d_parts = [], []
            for act in acts:
                act = block.activation_rows(act)
                grad = next(grads)
                if grad is None:  # this output does not reach the loss
                    grad = act.new_zeros(act.shape[0], act.shape[1], block.out_dim)
                else:
                    grad = block.gradient_rows(grad.detach())
                a_parts.append(act)
                d_parts.append(grad)
            if len(a_parts) == 1:
                result.append((a_parts[0], d_parts[0]))
            else:
                result.append((torch.cat(a_parts, dim=1), torch.cat(d_parts, dim=1)))
        self._clear()
        return result
