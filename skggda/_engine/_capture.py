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
    to :meth:`calls`. It differentiates the loss with respect to the captured
    *outputs* only -- weight gradients are never formed, which saves about a
    third of an ordinary backward pass -- and returns, per block, every
    call's input and output gradient.
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

    def calls(self, loss: torch.Tensor):
        """Per block, the list of its calls' ``(input, output_gradient)`` in this batch.

        Tensors are raw (as the layer saw them, detached); an output that does
        not reach the loss has a zero gradient. Blocks turn calls into rows
        (``HookBlock.rows``) or use them directly (a convolution's dot
        products are convolutions, with no unfolding).
        """
        outputs = [out for per_block in self._outputs for out in per_block]
        grads = iter(torch.autograd.grad(loss, outputs, allow_unused=True))
        result = []
        for block, acts, outs in zip(self.blocks, self._acts, self._outputs):
            if not acts:
                raise RuntimeError(
                    f"Layer {block.module_name!r} was not called in this batch; "
                    "its gradient cannot be captured."
                )
            calls = []
            for act, out in zip(acts, outs):
                grad = next(grads)
                calls.append((act, torch.zeros_like(out) if grad is None else grad.detach()))
            result.append(calls)
        self._clear()
        return result
