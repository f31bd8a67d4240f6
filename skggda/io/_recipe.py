"""A saved net's recipe is data: its parameters are checked before any is built.

A skorch net is rebuilt by calling its class with the saved parameters, so a
parameter is a way into code: ``compile__*`` reaches the C++ compiler,
``iterator_*__num_workers`` starts processes, ``dataset__*``, samplers,
collate and init functions run what they name, ``torch_load_kwargs`` reaches
``torch.load``. :func:`check_net_params` looks at each parameter's *node*
(nothing is built yet) and lets through only what rebuilding the module,
criterion and optimizer needs: plain values (numbers, strings, booleans,
``None`` and tuples or lists of them), trusted classes of the right kind for
``module``, ``criterion`` and ``optimizer``, skorch's own data loader and
dataset classes, and skggda's callbacks. Anything else is refused with an
error naming the parameter, unless the caller lists the parameter in
``trusted_params=``.
"""

from __future__ import annotations

import torch
from skorch.callbacks import Callback
from skorch.dataset import Dataset, ValidSplit

from ._trust import UnsafeFileError, resolve, type_name

#: Parameters whose value must be a plain value (see :func:`is_plain`).
PLAIN = {"lr", "max_epochs", "batch_size", "warm_start", "verbose", "random_state",
         "_flat_targets"}  # a regressor's record of its targets' shape
#: Parameters that take one of a few fixed values.
FIXED = {
    "compile": (False,),
    "torch_load_kwargs": (None,),
    "predict_nonlinearity": ("auto", None),
    "use_caching": ("auto", True, False),
}
#: ``prefix__name`` parameters: plain values for the module, criterion and optimizer.
PLAIN_PREFIXES = ("module__", "criterion__", "optimizer__", "callbacks__")
#: The data loader options that are plain choices (workers, samplers and functions are not).
LOADER_OPTIONS = {"iterator_train__shuffle", "iterator_train__drop_last",
                  "iterator_valid__shuffle", "iterator_valid__drop_last"}
#: Classes a parameter may name, by the base they must derive from.
CLASS_BASES = {"module": torch.nn.Module, "criterion": torch.nn.Module,
               "optimizer": torch.optim.Optimizer}
#: Parameters whose class must be exactly skorch's default.
EXACT_CLASSES = {"iterator_train": torch.utils.data.DataLoader,
                 "iterator_valid": torch.utils.data.DataLoader, "dataset": Dataset}


def check_net_params(items, where, trusted, trusted_params):
    """Refuse a saved net's parameter nodes that are more than a recipe.

    Parameters
    ----------
    items : list of [name, node]
        The net node's parameters, unbuilt.
    where : str
        The net's place in the file, for messages.
    trusted : list of str or None
        Names the caller trusts (callback classes among them).
    trusted_params : collection of str
        Parameter names the caller trusts whatever their value.
    """
    for name, node in items:
        if not isinstance(name, str):
            raise UnsafeFileError(f"{where} has a parameter named {name!r}, not a string.")
        if name in trusted_params:
            continue
        problem = _problem(name, node, trusted)
        if problem:
            raise UnsafeFileError(
                f"{where}: the net parameter {name}={_show(node)} is refused: {problem}. "
                f"If you trust this file's author, pass trusted_params=[{name!r}] to load.")


def _problem(name, node, trusted):
    """Why the parameter ``name`` with value ``node`` is refused, or ``None``."""
    if name in PLAIN or name.startswith(PLAIN_PREFIXES) or name in LOADER_OPTIONS:
        if name.startswith("criterion__") and _is_kind(node, "tensor", "array"):
            return None  # class weights
        return None if is_plain(node) else "only numbers, strings, booleans and tuples"
    if name in FIXED:
        allowed = FIXED[name]
        ok = any(node is v or (type(node) is type(v) and node == v) for v in allowed)
        return None if ok else f"it must be one of {allowed}"
    if name in CLASS_BASES:
        return _class_problem(node, CLASS_BASES[name], trusted)
    if name in EXACT_CLASSES:
        wanted = type_name(EXACT_CLASSES[name])
        ok = _is_kind(node, "type") and node.get("name") == wanted
        return None if ok else f"it must be {wanted}"
    if name == "device":
        return None if isinstance(node, str) else "a device name"  # replaced by load's device
    if name == "train_split":
        return None if node is None or _is_valid_split(node) else \
            "only None or skorch's ValidSplit"
    if name == "callbacks":
        return _callbacks_problem(node, trusted)
    if name == "classes":
        return None if node is None or is_plain(node) or _is_kind(node, "array") else \
            "only a list of class labels"
    if name == "_params_to_validate":  # skorch's own record of prefixed parameters
        ok = _is_kind(node, "set", "list") and all(isinstance(v, str) for v in node["items"])
        return None if ok else "only parameter names"
    return "it is not a parameter a recipe needs (it may reach code, processes or files)"


def is_plain(node):
    """Whether ``node`` is a number, string, boolean, ``None``, or a tuple/list of them."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return True
    if _is_kind(node, "float"):
        return True
    if _is_kind(node, "tuple", "list"):
        return isinstance(node.get("items"), list) and all(is_plain(v) for v in node["items"])
    return False


def _is_kind(node, *kinds):
    return isinstance(node, dict) and node.get("kind") in kinds


def _class_problem(node, base, trusted):
    if not _is_kind(node, "type"):
        return f"only a class (a subclass of {base.__name__}), not an instance or a function"
    cls = resolve(str(node.get("name")), trusted)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        return f"{node.get('name')} is not a subclass of {type_name(base)}"
    return None


def _is_valid_split(node):
    return (_is_kind(node, "object") and node.get("type") == type_name(ValidSplit)
            and _plain_state(node))


def _plain_state(node):
    """An object node whose attributes are plain values (or a dict of plain values)."""
    state = node.get("state")
    if not _is_kind(state, "dict") or not isinstance(state.get("items"), list):
        return False
    for pair in state["items"]:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            return False
        value = pair[1]
        if _is_kind(value, "dict"):
            items = value.get("items")
            if not isinstance(items, list) or not all(
                    isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                    and is_plain(p[1]) for p in items):
                return False
        elif not is_plain(value):
            return False
    return True


def _callbacks_problem(node, trusted):
    if node is None or node == "disable":
        return None
    if not _is_kind(node, "list", "tuple") or not isinstance(node.get("items"), list):
        return "only a list of callbacks"
    for item in node["items"]:
        if _is_kind(item, "tuple", "list") and isinstance(item.get("items"), list) \
                and len(item["items"]) == 2 and isinstance(item["items"][0], str):
            item = item["items"][1]  # a (name, callback) pair
        problem = _callback_problem(item, trusted)
        if problem:
            return problem
    return None


def _callback_problem(node, trusted):
    if not _is_kind(node, "object"):
        return "only callback objects"
    name = str(node.get("type"))
    cls = resolve(name, trusted)
    if not (isinstance(cls, type) and issubclass(cls, Callback)):
        return f"{name} is not a skorch callback"
    if name not in project_callbacks() and name not in set(trusted or ()):
        return (f"{name} is not one of skggda's callbacks; trust it with "
                f"trusted=[{name!r}] if you trust its code")
    if not _plain_state(node):
        return f"the callback {name} holds more than plain settings"
    return None


def project_callbacks():
    """Names of skggda's own callbacks: a file may use them without being trusted."""
    from ..models._callbacks import CheckpointRecorder, DivergenceCheck, OneCycleSchedule

    return {type_name(c) for c in (OneCycleSchedule, CheckpointRecorder, DivergenceCheck)}


def _show(node):
    text = repr(node)
    return text if len(text) <= 60 else text[:57] + "..."
