"""From a fitted estimator to a JSON tree of nodes plus a dict of tensors.

Every value becomes a node (see the package docstring for the list): JSON
scalars stand for themselves, numeric arrays and tensors go to the tensor
dict, classes and functions are named, skorch nets are saved as their
parameters (the recipe) plus their module's weights, and other objects as
their class name and attributes. Objects met twice are saved once and
referred to, so a net shared by an attributor and its grouper stays shared.
"""

from __future__ import annotations

import importlib
import inspect
import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback

from ..models import ConvertedModel
from ..utils._inputs import RowReader
from ._trust import type_name

#: Attributes of a fitted skorch net that scoring needs besides its weights.
NET_ATTRIBUTES = ("module_dims_", "classes_inferred_")
#: Attributes of a fitted ConvertedModel that its scikit-learn model determines.
CONVERTED = ("module_", "criterion_", "penalty_")


class Encoder:
    """Turns objects into nodes; collects tensors in :attr:`tensors`."""

    def __init__(self):
        self.tensors = {}
        self._ids = {}  # id(obj) -> node id
        self._alive = []  # keeps encoded objects alive so that their ids stay unique

    def encode(self, obj, where):
        """The node of ``obj``; ``where`` names it in error messages."""
        if obj is None or isinstance(obj, (bool, str)) or type(obj) is int:
            return obj
        if type(obj) is float:
            return obj if math.isfinite(obj) else {"kind": "float", "value": repr(obj)}
        if isinstance(obj, np.generic):
            return {"kind": "scalar", "dtype": obj.dtype.str,
                    "value": self.encode(obj.item(), where)}
        if isinstance(obj, torch.dtype):
            return {"kind": "torch_dtype", "name": str(obj).removeprefix("torch.")}
        if isinstance(obj, type):
            return {"kind": "type", "name": type_name(obj)}
        if inspect.isroutine(obj):
            return {"kind": "function", "name": _function_name(obj, where)}
        if id(obj) in self._ids:
            return {"kind": "ref", "id": self._ids[id(obj)]}
        self._ids[id(obj)] = node_id = len(self._ids)
        self._alive.append(obj)
        node = self._encode_object(obj, where)
        node["id"] = node_id
        return node

    def _encode_object(self, obj, where):
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
            return {"kind": type(obj).__name__ if type(obj) in _SEQUENCES else "list",
                    "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(items)]}
        if isinstance(obj, dict):
            return {"kind": "dict", "items": [[self.encode(k, where),
                                               self.encode(v, f"{where}[{k!r}]")]
                                              for k, v in obj.items()]}
        if isinstance(obj, RowReader):
            # streamed training data: the file holds its rows (a file is one piece)
            obj = obj[0:len(obj)]
        if isinstance(obj, np.ndarray):
            return self._array(obj, where)
        if torch.is_tensor(obj):
            return {"kind": "tensor", **self._add_tensor(obj), "requires_grad": obj.requires_grad}
        if isinstance(obj, np.random.RandomState):
            return {"kind": "random_state", "state": self.encode(obj.get_state(), where)}
        if isinstance(obj, NeuralNet):
            return self._net(obj, where)
        if isinstance(obj, torch.nn.Module):
            raise TypeError(
                f"Cannot save {where}: a torch module instance. skggda.io saves a net's "
                "module as its class, its module__ parameters and its weights; pass the "
                "class (module=MyModule) rather than an instance."
            )
        state = getattr(obj, "__dict__", None)
        if not isinstance(state, dict) or callable(obj):
            raise TypeError(f"Cannot save {where}: a {type_name(type(obj))} object.")
        if isinstance(obj, Callback):
            # a callback's parameters only: its fitted state (a scheduler bound to an
            # optimizer, recorded checkpoints) belongs to a training run that is over
            state = {k: v for k, v in state.items() if not k.endswith("_")}
        node = {"kind": "object", "type": type_name(type(obj))}
        if isinstance(obj, ConvertedModel) and hasattr(obj, "estimator_"):
            # the torch side is converted again from the scikit-learn model on loading
            state = {k: v for k, v in state.items() if k not in CONVERTED}
            node["reconvert"] = True
        node["state"] = self._attributes(state, where)
        return node

    def _attributes(self, mapping, where):
        """A dict node of named values (attributes, parameters): ``where.name`` in messages."""
        return {"kind": "dict", "items": [[name, self.encode(value, f"{where}.{name}")]
                                          for name, value in mapping.items()]}

    def _array(self, array, where):
        kind = array.dtype.kind
        if kind in "biufc":
            native = array.astype(array.dtype.newbyteorder("="), copy=False)
            return {"kind": "array", "dtype": array.dtype.str,
                    **self._add_tensor(torch.from_numpy(np.array(native)))}
        if kind == "U":
            # UTF-32 code points in the tensor payload: the file holds every byte the
            # array takes, so its declared width cannot ask for memory the file lacks
            width = array.dtype.itemsize // 4
            points = np.ascontiguousarray(array).view("=i4")
            points = points.reshape(array.shape + (width,))
            return {"kind": "array", "dtype": array.dtype.str, "codepoints": True,
                    **self._add_tensor(torch.from_numpy(np.array(points)))}
        if kind == "O":
            items = [self.encode(v, f"{where}[...]") for v in array.ravel().tolist()]
            return {"kind": "array", "dtype": array.dtype.str, "shape": list(array.shape),
                    "items": items}
        raise TypeError(f"Cannot save {where}: an array of dtype {array.dtype}.")

    def _add_tensor(self, tensor):
        """Store a private contiguous copy of ``tensor``; its node fields (name, layout)."""
        name = f"t{len(self.tensors)}"
        tensor = tensor.detach().to("cpu")
        # a dense tensor in another memory order (an eigh's column-major eigenvectors) is
        # stored in that order and viewed back: products then round exactly as before
        order = sorted(range(tensor.dim()), key=lambda i: -tensor.stride(i))
        permuted = tensor.permute(order)
        fields = {"tensor": name}
        if not tensor.is_contiguous() and permuted.is_contiguous():
            tensor, fields["permutation"] = permuted, order
        # a copy: safetensors refuses tensors that share memory
        self.tensors[name] = tensor.contiguous().clone()
        return fields

    def _net(self, net, where):
        params = net.get_params(deep=False)
        node = {"kind": "net", "type": type_name(type(net)),
                "params": self._attributes(params, where), "fitted": None}
        if getattr(net, "initialized_", False):
            attributes = {k: getattr(net, k) for k in NET_ATTRIBUTES if hasattr(net, k)}
            node["fitted"] = {
                "module_state": self.encode(dict(net.module_.state_dict()), f"{where}.module_"),
                "training": net.module_.training,
                "attributes": self._attributes(attributes, where),
                "history": self.encode(_epoch_history(net.history_), f"{where}.history_"),
            }
        return node


_SEQUENCES = (list, tuple, set, frozenset)


def _epoch_history(history):
    """The net's history per epoch, without its per-batch entries.

    Those entries are most of a long training's manifest (a dict per batch),
    and parsing them would take many times their bytes in memory; nothing
    reads them once training is over (``train_batch_count`` stays).
    """
    return [{key: value for key, value in epoch.items() if key != "batches"}
            for epoch in history]


def _function_name(fn, where):
    """``module.qualname`` of a function that can be imported back by that name."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    found = None
    if module and "<" not in qualname:
        try:
            found = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError):
            found = None
    if found is not fn:
        raise TypeError(
            f"Cannot save {where}={fn!r}: a lambda or local function cannot be "
            "saved without pickle. Use a built-in property (a name or a "
            "skggda.properties object) or a module-level function, which is saved by "
            "name and must be passed in trusted=[...] when loading."
        )
    return f"{module}.{qualname}"
