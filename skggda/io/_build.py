"""From a verified JSON tree of nodes and its tensors back to objects.

Only trusted types are ever resolved (``load`` checks every name in the
tree before building anything). Objects are restored the way pickle
restores them, without running their constructors (a new instance whose
attributes are set), except skorch nets: those are built from their saved
parameters, and a fitted net's module then receives its weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from skorch.history import History

from ._encode import NET_ATTRIBUTES
from ._trust import resolve

_NAMED_KINDS = {"type": "name", "function": "name", "object": "type", "net": "type"}


def named_types(node, found=None):
    """Every class or function name the tree of ``node`` refers to."""
    found = set() if found is None else found
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            key = _NAMED_KINDS.get(node.get("kind"))
            if key is not None:
                found.add(str(node.get(key)))
            stack.extend(node.values())
    return found


class Builder:
    """Turns nodes back into objects, reading tensors from ``tensors``."""

    def __init__(self, tensors, trusted):
        self._tensors = tensors
        self._trusted = trusted
        self._objects = {}  # node id -> object, for "ref" nodes

    def build(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or node.get("kind") not in _BUILDERS:
            raise ValueError(f"Unknown node in the file: {str(node)[:80]!r}.")
        return _BUILDERS[node["kind"]](self, node)

    def _keep(self, node, obj):
        if "id" in node:  # only shared objects carry one
            self._objects[node["id"]] = obj
        return obj

    def _ref(self, node):
        return self._objects[node["id"]]

    def _float(self, node):
        return float(_choice(node["value"], ("nan", "inf", "-inf")))

    def _sequence(self, node):
        kind = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[node["kind"]]
        return self._keep(node, kind(self.build(v) for v in node["items"]))

    def _dict(self, node):
        out = self._keep(node, {})
        for key, value in node["items"]:
            out[self.build(key)] = self.build(value)
        return out

    def _stored(self, node):
        """The stored tensor of ``node``, viewed back in its saved memory order."""
        tensor = self._tensors[node["tensor"]]
        order = node.get("permutation")
        if order is None:
            return tensor
        if sorted(order) != list(range(tensor.dim())):
            raise ValueError(f"{order!r} is not a permutation of a {tensor.dim()}-d tensor.")
        return tensor.permute([order.index(i) for i in range(tensor.dim())])

    def _tensor(self, node):
        tensor = self._stored(node)
        return self._keep(node, tensor.requires_grad_(bool(node["requires_grad"])))

    def _array(self, node):
        dtype = np.dtype(node["dtype"])
        if "tensor" in node:
            if dtype.kind not in "biufc":
                raise ValueError(f"An array of dtype {dtype} cannot come from a tensor.")
            # astype(copy=False) keeps the saved memory order (and owns its memory already)
            return self._keep(node, self._stored(node).numpy().astype(dtype, copy=False))
        if dtype.kind == "U":
            array = np.array([str(v) for v in node["items"]], dtype=dtype)
        elif dtype.kind == "O":
            array = np.empty(len(node["items"]), dtype=object)
            array[:] = [self.build(v) for v in node["items"]]
        else:
            raise ValueError(f"An array of dtype {dtype} cannot come from JSON items.")
        return self._keep(node, array.reshape([int(n) for n in node["shape"]]))

    def _scalar(self, node):
        dtype = np.dtype(node["dtype"])
        if dtype.kind not in "biufcU":
            raise ValueError(f"A scalar of dtype {dtype} is not supported.")
        return dtype.type(self.build(node["value"]))

    def _torch_dtype(self, node):
        dtype = getattr(torch, str(node["name"]), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{node['name']!r} is not a torch dtype.")
        return dtype

    def _named(self, node):
        return resolve(node["name"], self._trusted)

    def _random_state(self, node):
        random_state = self._keep(node, np.random.RandomState())
        random_state.set_state(self.build(node["state"]))
        return random_state

    def _object(self, node):
        cls = resolve(node["type"], self._trusted)
        if not isinstance(cls, type):
            raise ValueError(f"{node['type']} is not a class.")
        obj = self._keep(node, cls.__new__(cls))
        obj.__dict__.update(_str_keys(self.build(node["state"])))
        if node.get("reconvert"):
            _reconvert(obj)
        return obj

    def _net(self, node):
        cls = resolve(node["type"], self._trusted)
        params = _str_keys(self.build(node["params"]))
        fitted = node["fitted"]
        if fitted is not None and str(params.get("device", "cpu")).startswith("cuda") \
                and not torch.cuda.is_available():
            warnings.warn("The net was saved on a GPU; no GPU here, so it is loaded on the "
                          "CPU.", UserWarning, stacklevel=4)
            params["device"] = "cpu"
        net = self._keep(node, cls(**params))
        if fitted is not None:
            _restore_fitted_net(net, fitted, self)
        return net


def _restore_fitted_net(net, fitted, builder):
    """Initialize ``net`` from its parameters, then give its module the saved weights."""
    for name, value in _str_keys(builder.build(fitted["attributes"])).items():
        if name not in NET_ATTRIBUTES:
            raise ValueError(f"Unexpected net attribute {name!r} in the file.")
        setattr(net, name, value)
    # building the module draws initial weights: keep the caller's RNG as it was
    with torch.random.fork_rng(devices=[]):
        net.initialize()
    device = next(net.module_.parameters(), torch.empty(0)).device
    state = {k: v.to(device) for k, v in _str_keys(builder.build(fitted["module_state"])).items()}
    net.module_.load_state_dict(state, assign=True)  # assign: keep the saved dtypes
    net.module_.train(bool(fitted["training"]))
    net.initialize_optimizer()  # the optimizer must hold the loaded parameters
    net.history_ = History(builder.build(fitted["history"]))


def _reconvert(model):
    """Rebuild a ConvertedModel's torch module, loss and penalty from its scikit-learn model."""
    from ..models import ConvertedModel

    if not isinstance(model, ConvertedModel):
        raise ValueError(f"Only a ConvertedModel is converted, not a {type(model).__name__}.")
    model._adopt(model.estimator_, model.n_train_samples_)


def _str_keys(mapping):
    if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
        raise ValueError("Expected a mapping with string keys in the file.")
    return mapping


def _choice(value, allowed):
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {allowed}.")
    return value


_BUILDERS = {
    "float": Builder._float, "list": Builder._sequence, "tuple": Builder._sequence,
    "set": Builder._sequence, "frozenset": Builder._sequence, "dict": Builder._dict,
    "ref": Builder._ref, "tensor": Builder._tensor, "array": Builder._array,
    "scalar": Builder._scalar, "torch_dtype": Builder._torch_dtype, "type": Builder._named,
    "function": Builder._named, "random_state": Builder._random_state,
    "object": Builder._object, "net": Builder._net,
}
