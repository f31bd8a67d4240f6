"""From a verified JSON tree of nodes and its tensors back to objects.

Only trusted types are ever resolved (``load`` checks every name in the
tree before building anything), and each in the role it can play: a net
node is a skorch net, an object node is restored data (never a net, a
module, an optimizer or a data loader), a callback is skggda's own. Objects
are restored the way pickle restores them, without running their
constructors (a new instance whose attributes are set), but no attribute
may replace a method or property of the class. Skorch nets are built from
their saved parameters, which must be a recipe (:mod:`._recipe`); a fitted
net's module is first built on the ``meta`` device, where it allocates
nothing, and its parameters' shapes are compared with the stored tensors
before the real module is built and given its weights. Every declared size
(array shapes, string widths, dtypes) is checked against what the file
holds.
"""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.history import History

from ._encode import NET_ATTRIBUTES
from ._recipe import check_net_params, project_callbacks
from ._trust import UnsafeFileError, resolve, type_name

_NAMED_KINDS = {"type": "name", "function": "name", "object": "type", "net": "type"}
#: NumPy dtypes a file may declare: one byte order, one kind, one item size.
_DTYPE = re.compile(r"^[<>|=]?(?:[biuf][1248]|c(?:8|16)|U[0-9]{1,9}|O8?|\?)$")
#: Classes that are code, not data: never restored attribute by attribute.
_NOT_DATA = (NeuralNet, torch.nn.Module, torch.optim.Optimizer, torch.utils.data.DataLoader,
             torch.utils.data.Dataset, History)
#: Elements a module may hold beyond the stored ones (non-persistent buffers).
_SPARE_ELEMENTS = 1 << 16


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
    """Turns nodes back into objects, reading tensors from ``tensors``.

    Parameters
    ----------
    tensors : dict of str to Tensor
        The verified payload.
    trusted : list of str or None
        Names the caller trusts.
    trusted_params : collection of str
        Net parameters the caller trusts whatever their value.
    device : str
        Where loaded nets (and estimators with a ``device`` parameter) run.
    """

    def __init__(self, tensors, trusted, trusted_params=(), device="cpu"):
        self._tensors = tensors
        self._trusted = trusted
        self._trusted_params = set(trusted_params)
        self._device = device
        self._objects = {}  # node id -> object, for "ref" nodes

    def build(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or node.get("kind") not in _BUILDERS:
            raise UnsafeFileError(f"Unknown node in the file: {str(node)[:80]!r}.")
        return _BUILDERS[node["kind"]](self, node)

    def _keep(self, node, obj):
        if "id" in node:  # only shared objects carry one
            self._objects[node["id"]] = obj
        return obj

    def _ref(self, node):
        if node.get("id") not in self._objects:
            raise UnsafeFileError(f"A reference to an object not seen before: {node!r:.80}.")
        return self._objects[node["id"]]

    def _float(self, node):
        return float(_choice(node["value"], ("nan", "inf", "-inf")))

    def _sequence(self, node):
        kind = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[node["kind"]]
        return self._keep(node, kind(self.build(v) for v in _items(node)))

    def _dict(self, node):
        out = self._keep(node, {})
        for pair in _items(node):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise UnsafeFileError(f"A dict item that is not a pair: {pair!r:.80}.")
            out[self.build(pair[0])] = self.build(pair[1])
        return out

    def _stored(self, node):
        """The stored tensor of ``node``, viewed back in its saved memory order."""
        name = node["tensor"]
        if not isinstance(name, str) or name not in self._tensors:
            raise UnsafeFileError(f"A node names the tensor {name!r:.40}, which the file lacks.")
        tensor = self._tensors[name]
        order = node.get("permutation")
        if order is None:
            return tensor
        if not isinstance(order, list) or sorted(order) != list(range(tensor.dim())):
            raise UnsafeFileError(f"{order!r:.60} is not a permutation of a "
                                  f"{tensor.dim()}-d tensor.")
        return tensor.permute([order.index(i) for i in range(tensor.dim())])

    def _tensor(self, node):
        tensor = self._stored(node)
        return self._keep(node, tensor.requires_grad_(node["requires_grad"] is True))

    def _array(self, node):
        dtype = _numpy_dtype(node["dtype"])
        if node.get("codepoints") is True:
            return self._keep(node, self._strings(node, dtype))
        if "tensor" in node:
            tensor = self._stored(node)
            if dtype.kind not in "biufc" or tensor.dtype in (torch.bfloat16,) or \
                    dtype.newbyteorder("=") != np.dtype(_numpy_name(tensor.dtype)):
                raise UnsafeFileError(f"An array of dtype {dtype} cannot come from a tensor "
                                      f"of dtype {tensor.dtype}.")
            # astype(copy=False) keeps the saved memory order (and owns its memory already)
            return self._keep(node, tensor.numpy().astype(dtype, copy=False))
        items = _items(node)
        shape = _shape(node.get("shape"), len(items))
        if dtype.kind == "U":
            strings = [_string(v) for v in items]
            # the declared width may not claim more memory than the strings themselves
            if dtype.itemsize * len(strings) > 16 * (sum(map(len, strings)) + 3 * len(strings)):
                raise UnsafeFileError(f"A string array declares a width ({dtype}) its "
                                      "strings do not have.")
            array = np.array(strings, dtype=dtype)
        elif dtype.kind == "O":
            array = np.empty(len(items), dtype=object)
            array[:] = [self.build(v) for v in items]
        else:
            raise UnsafeFileError(f"An array of dtype {dtype} cannot come from JSON items.")
        return self._keep(node, array.reshape(shape))

    def _strings(self, node, dtype):
        """A string array from its UTF-32 code points, shape ``(*shape, width)``."""
        points = self._stored(node)
        if dtype.kind != "U" or points.dtype != torch.int32 or points.dim() < 1 \
                or points.shape[-1] * 4 != dtype.itemsize:
            raise UnsafeFileError(f"A string array of dtype {dtype} cannot come from "
                                  f"{points.dtype} code points of shape {tuple(points.shape)}.")
        array = points.numpy()
        if array.size and (array.min() < 0 or array.max() > 0x10FFFF):
            raise UnsafeFileError("A string array holds values that are not code points.")
        return np.ascontiguousarray(array).view(dtype.newbyteorder("=")).reshape(
            points.shape[:-1]).astype(dtype, copy=False)

    def _scalar(self, node):
        dtype = _numpy_dtype(node["dtype"])
        value = node["value"]
        if dtype.kind not in "biufcU" or not (isinstance(value, (bool, int, float, str))
                                              or _is_kind(value, "float")):
            raise UnsafeFileError(f"A scalar of dtype {dtype} is not supported.")
        if dtype.kind == "U":
            return np.str_(_string(value))
        return dtype.type(self.build(value))

    def _torch_dtype(self, node):
        name = node["name"]
        dtype = getattr(torch, name, None) if isinstance(name, str) and name.isidentifier() \
            else None
        if not isinstance(dtype, torch.dtype):
            raise UnsafeFileError(f"{name!r:.40} is not a torch dtype.")
        return dtype

    def _named(self, node):
        return resolve(str(node["name"]), self._trusted)

    def _random_state(self, node):
        random_state = self._keep(node, np.random.RandomState())
        random_state.set_state(self.build(node["state"]))
        return random_state

    def _object(self, node):
        cls = resolve(str(node["type"]), self._trusted)
        _check_object_class(cls, str(node["type"]), self._trusted)
        obj = self._keep(node, cls.__new__(cls))
        state = _str_keys(self.build(node["state"]))
        _check_attribute_names(cls, state)
        if "device" in state and isinstance(state["device"], str) and _is_skggda(cls):
            state["device"] = self._device
        obj.__dict__.update(state)
        if node.get("reconvert") is True:
            _reconvert(obj)
        return obj

    def _net(self, node):
        name = str(node["type"])
        cls = resolve(name, self._trusted)
        if not (isinstance(cls, type) and issubclass(cls, NeuralNet)):
            raise UnsafeFileError(f"A net node names {name}, which is not a skorch net.")
        check_net_params(_items(node["params"]), name, self._trusted, self._trusted_params)
        params = _str_keys(self.build(node["params"]))
        params["device"] = self._device
        net = self._keep(node, cls(**params))
        fitted = node["fitted"]
        if fitted is not None:
            _restore_fitted_net(net, fitted, self)
        return net


def check_root(node, trusted):
    """The file's root must be a skggda grouper or attributor (or a type the caller trusts)."""
    from ..attribution import BaseAttributor
    from ..grouping import BaseGrouper

    name = str(node.get("type")) if _is_kind(node, "object") else None
    if name is not None and name in set(trusted or ()):
        return
    cls = resolve(name, trusted) if name is not None else None
    if not (isinstance(cls, type) and issubclass(cls, (BaseAttributor, BaseGrouper))):
        raise UnsafeFileError(f"The file's root is {name or str(node)[:40]!r}, not a skggda "
                              "grouper or attributor.")


def _check_object_class(cls, name, trusted):
    if not isinstance(cls, type):
        raise UnsafeFileError(f"{name} is not a class.")
    if issubclass(cls, _NOT_DATA):
        raise UnsafeFileError(f"{name} is code, not data: it cannot be restored as an object.")
    if issubclass(cls, Callback) and name not in project_callbacks() \
            and name not in set(trusted or ()):
        raise UnsafeFileError(f"{name} is not one of skggda's callbacks.")


def _check_attribute_names(cls, state):
    """No restored attribute may stand in for a method, property or special name."""
    for name in state:
        if not name.isidentifier() or (name.startswith("__") and name.endswith("__")):
            raise UnsafeFileError(f"{type_name(cls)} cannot have an attribute {name!r:.40}.")
        found = inspect.getattr_static(cls, name, None)
        if found is not None and (callable(found) or hasattr(type(found), "__get__")):
            raise UnsafeFileError(f"The attribute {name!r} of {type_name(cls)} would replace "
                                  "its method or property.")


def _is_skggda(cls):
    return cls.__module__.split(".")[0] == "skggda"


def _restore_fitted_net(net, fitted, builder):
    """Initialize ``net`` from its parameters, then give its module the saved weights."""
    for name, value in _str_keys(builder.build(fitted["attributes"])).items():
        if name not in NET_ATTRIBUTES:
            raise UnsafeFileError(f"Unexpected net attribute {name!r:.40} in the file.")
        setattr(net, name, value)
    state = _str_keys(builder.build(fitted["module_state"]))
    if not all(torch.is_tensor(v) for v in state.values()):
        raise UnsafeFileError("A net's module state holds more than tensors.")
    _check_module_shapes(net, state)
    # building the module draws initial weights: keep the caller's RNG as it was
    with torch.random.fork_rng(devices=[]):
        net.initialize()
    device = next(net.module_.parameters(), torch.empty(0)).device
    net.module_.load_state_dict({k: v.to(device) for k, v in state.items()},
                                assign=True)  # assign: keep the saved dtypes
    net.module_.train(fitted["training"] is True)
    net.initialize_optimizer()  # the optimizer must hold the loaded parameters
    net.history_ = History(builder.build(fitted["history"]))


def _check_module_shapes(net, state):
    """Build the module on the ``meta`` device and compare it with the stored tensors.

    The meta device allocates nothing, so a recipe asking for a module far
    larger than the file is refused before any memory is taken.
    """
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        probe = net.module(**net.get_params_for("module"))
    expected = probe.state_dict()
    if set(expected) != set(state):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise UnsafeFileError(f"The module's recipe does not match its stored weights "
                              f"(missing {missing[:3]}, unexpected {extra[:3]}).")
    for key, tensor in expected.items():
        stored = state[key]
        if tuple(tensor.shape) != tuple(stored.shape) or \
                tensor.is_floating_point() != stored.is_floating_point():
            raise UnsafeFileError(
                f"The module's recipe builds {key} as {tuple(tensor.shape)} {tensor.dtype}, "
                f"but the file stores {tuple(stored.shape)} {stored.dtype}.")
    built = sum(t.numel() for t in [*probe.parameters(), *probe.buffers()])
    if built > sum(t.numel() for t in state.values()) + _SPARE_ELEMENTS:
        raise UnsafeFileError("The module's recipe builds more than the file stores.")


def _reconvert(model):
    """Rebuild a ConvertedModel's torch module, loss and penalty from its scikit-learn model."""
    from ..models import ConvertedModel

    if not isinstance(model, ConvertedModel):
        raise UnsafeFileError(f"Only a ConvertedModel is converted, not a "
                              f"{type(model).__name__}.")
    model._adopt(model.estimator_, model.n_train_samples_)


def _numpy_dtype(name):
    if not isinstance(name, str) or not _DTYPE.match(name):
        raise UnsafeFileError(f"{name!r:.40} is not a NumPy dtype a file may hold.")
    return np.dtype(name)


def _numpy_name(torch_dtype):
    return str(torch.empty(0, dtype=torch_dtype).numpy().dtype)


def _shape(shape, n_items):
    if not (isinstance(shape, list) and len(shape) <= 32
            and all(type(n) is int and n >= 0 for n in shape)
            and math.prod(shape) == n_items):
        raise UnsafeFileError(f"The shape {shape!r:.60} does not hold {n_items} items.")
    return shape


def _string(value):
    if not isinstance(value, str):
        raise UnsafeFileError(f"A string array holds {value!r:.40}.")
    return value


def _items(node):
    items = node.get("items") if isinstance(node, dict) else None
    if not isinstance(items, list):
        raise UnsafeFileError(f"A node without a list of items: {str(node)[:80]!r}.")
    return items


def _is_kind(node, *kinds):
    return isinstance(node, dict) and node.get("kind") in kinds


def _str_keys(mapping):
    if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
        raise UnsafeFileError("Expected a mapping with string keys in the file.")
    return mapping


def _choice(value, allowed):
    if value not in allowed:
        raise UnsafeFileError(f"{value!r:.40} is not one of {allowed}.")
    return value


_BUILDERS = {
    "float": Builder._float, "list": Builder._sequence, "tuple": Builder._sequence,
    "set": Builder._sequence, "frozenset": Builder._sequence, "dict": Builder._dict,
    "ref": Builder._ref, "tensor": Builder._tensor, "array": Builder._array,
    "scalar": Builder._scalar, "torch_dtype": Builder._torch_dtype, "type": Builder._named,
    "function": Builder._named, "random_state": Builder._random_state,
    "object": Builder._object, "net": Builder._net,
}
