"""``checkpoints="all"``: the attributors that read the net at every epoch's checkpoint.

TracIn sums over the checkpoints and influence fits its solver at each; both
add the same recorder to the net before training, refuse a frozen net (no
training run, nothing recorded) and read the recorded checkpoints alike.
"""

from __future__ import annotations

from ..models._callbacks import CheckpointRecorder

#: The recorder's name among the net's callbacks.
_RECORDER = "skggda_checkpoints"


class TrainingCheckpoints:
    """Mixin of the attributors with a ``checkpoints`` parameter (``"last"`` or ``"all"``)."""

    def _check_params(self, frozen):
        if frozen and self.checkpoints == "all":
            raise ValueError(
                "checkpoints='all' needs the training run, but the estimator is a "
                "FrozenEstimator (final weights only); use checkpoints='last'."
            )

    def _training_callbacks(self):
        if self.checkpoints == "all":
            return [(_RECORDER, CheckpointRecorder())]
        return []


def recorded_checkpoints(net):
    """``(state_dict, mean learning rate)`` of every epoch, as recorded while ``net`` trained."""
    recorder = dict(net.callbacks_)[_RECORDER]
    return list(zip(recorder.checkpoints_, recorder.learning_rates_))
