"""Hostile .skggda files, crafted as an attacker would from files skggda saved.

Each attack takes a saved file's manifest (parsed) and tensor payload and
returns the bytes of a new file; most keep the SHA-256 digest consistent,
since anyone can recompute it. ``ATTACKS`` maps a name to the kind of saved
file it starts from, the attack, and a pattern the refusal must match (so
that a file refused for the wrong reason, say a failed 40 GB allocation,
does not count as caught).
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import struct
import zipfile

import torch
from safetensors.torch import load as load_payload
from safetensors.torch import save as save_payload

from skggda.io._container import digest


def pack(manifest, payload, *, resign=True, compression=zipfile.ZIP_STORED, extra=()):
    """The bytes of a file with this manifest and payload (re-digested, as an attacker would)."""
    manifest = copy.deepcopy(manifest)
    if resign:
        manifest["sha256"] = digest(manifest["root"], payload)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, separators=(",", ":")))
        archive.writestr("tensors.safetensors", payload)
        for name, content in extra:
            archive.writestr(name, content)
    return out.getvalue()


def unpack(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read("manifest.json")), archive.read("tensors.safetensors")


# -- finding nodes ----------------------------------------------------------------------


def nodes(node, kind=None):
    """Every node (dict) in the tree, depth first; only those of ``kind`` if given."""
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            if kind is None or node.get("kind") == kind:
                yield node
            stack.extend(reversed(list(node.values())))


def first(root, kind):
    return next(nodes(root, kind))


def attribute(obj_node, name):
    """The [name, value] pair of an object node's attribute (or a net's parameter)."""
    key = "params" if obj_node["kind"] == "net" else "state"
    for pair in obj_node[key]["items"]:
        if pair[0] == name:
            return pair
    pair = [name, None]
    obj_node[key]["items"].append(pair)
    return pair


def set_net_param(name, value):
    @edit
    def attack(manifest):
        attribute(first(manifest["root"], "net"), name)[1] = value
    return attack


def set_attribute(name, value, kind="object"):
    @edit
    def attack(manifest):
        attribute(first(manifest["root"], kind), name)[1] = value
    return attack


def edit(change):
    """An attack that edits the manifest in place with ``change(manifest)`` (also a decorator)."""
    def attack(manifest, payload):
        change(manifest)
        return pack(manifest, payload)
    return attack


def edit_payload(change):
    """An attack that rewrites one tensor with ``change(tensors)``, re-digested."""
    def attack(manifest, payload):
        tensors = dict(load_payload(payload))
        change(manifest, tensors)
        return pack(manifest, save_payload(tensors))
    return attack


def type_node(name):
    return {"kind": "type", "name": name}


def tuple_node(*items):
    return {"kind": "tuple", "items": list(items)}


ADAM = "torch.optim.adam.Adam"
LOADER = "torch.utils.data.dataloader.DataLoader"
KERNEL_STATE = "skggda.attribution._kernel.KernelState"


# -- attacks on the container -----------------------------------------------------------


def pickle_polyglot(manifest, payload):
    class Shell:  # what a pickle reader would run
        def __reduce__(self):
            return (print, ("pwned",))

    return pickle.dumps(Shell()) + pack(manifest, payload)


def trailing_bytes(manifest, payload):
    return pack(manifest, payload) + b"\x00" * 64


def zip_comment(manifest, payload):
    data = bytearray(pack(manifest, payload))
    comment = b"hello"
    data[-2:] = struct.pack("<H", len(comment))
    return bytes(data) + comment


def deflated(manifest, payload):  # a zip bomb needs compression
    return pack(manifest, payload, compression=zipfile.ZIP_DEFLATED)


def extra_entry(manifest, payload):
    return pack(manifest, payload, extra=[("run.sh", b"rm -rf /")])


def nested_json(manifest, payload):
    text = json.dumps({**manifest, "root": "ROOT"}, separators=(",", ":"))
    return _with_manifest_text(text.replace('"ROOT"', "[" * 100_000 + "]" * 100_000), payload)


def json_bomb(manifest, payload):
    """Two million empty lists: 6 MB of text, about 130 MB once parsed."""
    text = json.dumps({**manifest, "root": "ROOT"}, separators=(",", ":"))
    bomb = '{"kind":"list","items":[' + ",".join(["[]"] * 2_000_000) + "]}"
    return _with_manifest_text(text.replace('"ROOT"', bomb), payload)


def nan_constant(manifest, payload):
    text = json.dumps(manifest, separators=(",", ":"))
    assert '["verbose",0]' in text
    return _with_manifest_text(text.replace('["verbose",0]', '["verbose",NaN]', 1), payload)


def _with_manifest_text(text, payload):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("manifest.json", text)
        archive.writestr("tensors.safetensors", payload)
    return out.getvalue()


def huge_safetensors_header(manifest, payload):
    header = json.dumps({"t0": {"dtype": "F32", "shape": [100_000, 100_000],
                                "data_offsets": [0, 40_000_000_000]}}).encode()
    fake = struct.pack("<Q", len(header)) + header + b"\x00" * 16
    return pack(manifest, fake)


# -- attacks on the recipe --------------------------------------------------------------


@edit
def _compile_options(manifest):
    net = first(manifest["root"], "net")
    attribute(net, "compile")[1] = True
    attribute(net, "compile__options")[1] = {"kind": "dict", "items": [
        ["cpp_wrapper", True], ["cpp.cxx", tuple_node("sh -c 'touch /tmp/pwned' #")]]}


@edit
def _wider_module(manifest):
    attribute(first(manifest["root"], "net"), "module__hidden_layer_sizes")[1] = \
        tuple_node(100_000, 100_000)


@edit
def _wide_layer(manifest):  # the same layers as stored, one of them 10^8 wide
    attribute(first(manifest["root"], "net"), "module__hidden_layer_sizes")[1] = \
        tuple_node(100_000_000)


@edit
def _more_features(manifest):
    net = next(n for n in nodes(manifest["root"], "net") if n["fitted"])
    pair = attribute({"kind": "object", "state": net["fitted"]["attributes"]}, "module_dims_")
    pair[1] = {"kind": "dict", "items": [["n_features", 3_000_000], ["n_classes", 3]]}


@edit
def _net_as_loader(manifest):
    first(manifest["root"], "net")["type"] = LOADER


# -- attacks on objects and values ------------------------------------------------------


def _root(node):
    return edit(lambda manifest: manifest.__setitem__("root", node))


def _nan_weight(manifest, tensors):
    net = next(n for n in nodes(manifest["root"], "net") if n["fitted"])
    name = first(net["fitted"]["module_state"], "tensor")["tensor"]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")


def _widen_array_dtype(manifest, tensors):
    node = next(n for n in nodes(manifest["root"], "array") if n.get("dtype") == "|i1")
    node["dtype"] = "<c16"  # 16 bytes for each stored byte


def _bad_codepoints(manifest, tensors):
    node = first(manifest["root"], "array")
    node.update({"dtype": "<U1000000", "codepoints": True})


@edit
def _old_style_wide_strings(manifest):
    pair = attribute(first(manifest["root"], "object"), "classes_")
    pair[1] = {"kind": "array", "dtype": "<U100000000", "shape": [3], "items": ["a", "b", "c"]}


@edit
def _shape_mismatch(manifest):
    pair = attribute(first(manifest["root"], "object"), "classes_")
    pair[1] = {"kind": "array", "dtype": "|O", "shape": [1_000_000_000], "items": []}


@edit
def _structured_dtype(manifest):
    node = first(manifest["root"], "array")
    node["dtype"] = "[('a', '<f8')]"


@edit
def _bad_permutation(manifest):
    first(manifest["root"], "array")["permutation"] = [0, 0]


@edit
def _unknown_tensor(manifest):
    first(manifest["root"], "array")["tensor"] = "t9999"


@edit
def _dangling_ref(manifest):
    attribute(first(manifest["root"], "object"), "grouper")[1] = {"kind": "ref", "id": 99999}


def _labels_as_floats(manifest, tensors):
    tensors["labels"] = torch.arange(48, dtype=torch.float64) / 4 + 0.5
    attribute(manifest["root"], "labels_")[1] = {"kind": "array", "dtype": "<f8",
                                                 "tensor": "labels"}


@edit
def _estimator_is_a_grouper(manifest):
    root = manifest["root"]
    grouper = {"kind": "object", "type": "skggda.grouping._groupers.RandomGrouper",
               "state": {"kind": "dict", "items": []}}
    attribute(root, "estimator_")[1] = grouper


@edit
def _reconvert_a_grouper(manifest):
    manifest["root"]["reconvert"] = True


@edit
def _callback_with_code(manifest):
    callback = next(n for n in nodes(first(manifest["root"], "net"), "object")
                    if n["type"].endswith("OneCycleSchedule"))
    attribute(callback, "kwargs")[1] = {"kind": "dict", "items": [
        ["anneal_strategy", type_node(ADAM)]]}


def poison(owner):
    """An attack that writes a NaN into the first float array held by an ``owner`` node."""
    def change(manifest, tensors):
        owners = [n for n in nodes(manifest["root"], "object") if n["type"].endswith(owner)]
        name = next(a["tensor"] for node in owners for a in nodes(node)
                    if a.get("kind") in ("array", "tensor") and "tensor" in a
                    and tensors[a["tensor"]].is_floating_point())
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[-1] = float("nan")
    return edit_payload(change)


def _nan_store(manifest, tensors):
    """A NaN in the stored, preconditioned group gradients (read by attribute)."""
    name = attribute(manifest["root"], "_group_store")[1]["tensor"]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")


def _store_handle(name, folder="/", shape=(1, 1)):
    """The group store replaced by a handle to a file outside any store folder."""
    @edit
    def attack(manifest):
        state = [["folder", folder], ["name", name], ["shape", tuple_node(*shape)],
                 ["dtype", "<f4"], ["sha256", "0" * 64]]
        attribute(manifest["root"], "_group_store")[1] = {
            "kind": "object", "type": "skggda.attribution._store.DiskStore",
            "state": {"kind": "dict", "items": state}}
    return attack


def _projected_dims(dims):
    """A projected K-FAC whose block dimensions are not its blocks' (scoring would split
    projected gradients at them)."""
    @edit
    def attack(manifest):
        preconditioner = next(n for n in nodes(manifest["root"], "object")
                              if n["type"].endswith("KFACPreconditioner"))
        attribute(preconditioner, "dims")[1] = {"kind": "list", "items": list(dims)}
    return attack


@edit
def _converted_from_a_type(manifest):
    converted = next(n for n in nodes(manifest["root"], "object") if n.get("reconvert"))
    converted["state"]["items"].append(["estimator_", type_node(ADAM)])  # the last one wins


#: name -> (saved kind, attack, pattern the refusal must match)
ATTACKS = {
    # the container
    "pickle-before-the-zip": ("tracin", pickle_polyglot, "unexpected bytes before"),
    "bytes-after-the-zip": ("tracin", trailing_bytes, "outside its two entries"),
    "zip-comment": ("tracin", zip_comment, "outside its two entries"),
    "compressed-entries": ("tracin", deflated, "compressed"),
    "extra-entry": ("tracin", extra_entry, "not a skggda file"),
    "deep-json": ("kmeans", nested_json, "nested deeper"),
    "json-bomb": ("kmeans", json_bomb, "parse would take"),
    "nan-in-json": ("kmeans", nan_constant, "wrong form|unreadable"),
    "huge-safetensors-header": ("kmeans", huge_safetensors_header, "unreadable tensors"),
    "edited-without-digest": ("tracin", lambda m, p: pack(
        set_attribute("verbose", 5)(m, p) and m, p, resign=False), "altered"),
    "future-version": ("kmeans", edit(lambda m: m.__setitem__("version", 2)), "version"),
    # the recipe
    "compile-runs-the-compiler": ("tracin", _compile_options, "compile"),
    "loader-workers": ("tracin", set_net_param("iterator_valid__num_workers", 3),
                       "iterator_valid__num_workers"),
    "loader-sampler": ("tracin", set_net_param("iterator_train__sampler", type_node(ADAM)),
                       "iterator_train__sampler"),
    "loader-collate": ("tracin", set_net_param("iterator_valid__collate_fn",
                                               type_node(KERNEL_STATE)), "collate_fn"),
    "loader-worker-init": ("tracin", set_net_param("iterator_train__worker_init_fn",
                                                   type_node(ADAM)), "worker_init_fn"),
    "dataset-options": ("tracin", set_net_param("dataset__length", 10**12), "dataset__length"),
    "torch-load-kwargs": ("tracin", set_net_param("torch_load_kwargs", {
        "kind": "dict", "items": [["weights_only", False]]}), "torch_load_kwargs"),
    "callable-nonlinearity": ("tracin", set_net_param("predict_nonlinearity",
                                                      type_node(ADAM)), "predict_nonlinearity"),
    "module-is-an-optimizer": ("tracin", set_net_param("module", type_node(ADAM)), "module="),
    "criterion-is-a-loader": ("tracin", set_net_param("criterion", type_node(LOADER)),
                              "criterion="),
    "iterator-is-not-a-loader": ("tracin", set_net_param("iterator_valid", type_node(ADAM)),
                                 "iterator_valid"),
    "unknown-parameter": ("tracin", set_net_param("pin_memory_device", "cuda"),
                          "pin_memory_device"),
    "callback-with-code": ("tracin", _callback_with_code, "callbacks"),
    "callback-sink": ("tracin", set_net_param("callbacks__print_log__sink",
                                              {"kind": "function", "name": "builtins.print"}),
                      "untrusted|not trusted"),
    "40-gb-module": ("tracin", _wider_module, "recipe does not match"),
    "wide-layer": ("tracin", _wide_layer, "recipe builds"),
    "million-features": ("tracin", _more_features, "recipe builds"),
    "net-is-a-dataloader": ("tracin", _net_as_loader, "not a skorch net"),
    # objects and values
    "root-is-a-list": ("kmeans", _root({"kind": "list", "items": []}), "root"),
    "root-is-kernel-state": ("kmeans", _root({"kind": "object", "type": KERNEL_STATE,
                                              "state": {"kind": "dict", "items": []}}), "root"),
    "net-as-an-object": ("tracin", edit(lambda m: attribute(m["root"], "estimator").__setitem__(
        1, {"kind": "object", "type": "skggda.models._classifier.SeededNeuralNetClassifier",
            "state": {"kind": "dict", "items": []}})), "code, not data"),
    "loader-as-an-object": ("tracin", set_attribute("_state", {
        "kind": "object", "type": LOADER, "state": {"kind": "dict", "items": []}}),
        "code, not data"),
    "attribute-replaces-a-method": ("tracin", set_attribute("score_groups", type_node(ADAM)),
                                    "replace its method"),
    "dunder-attribute": ("tracin", set_attribute("__class__", type_node(KERNEL_STATE)),
                         "cannot have an attribute"),
    "nan-weight": ("tracin", edit_payload(_nan_weight), "not finite"),
    "nan-fitted-float": ("kmeans", set_attribute("inertia_", {"kind": "float", "value": "nan"}),
                         "NaN or infinite"),
    "widened-dtype": ("tracin", edit_payload(_widen_array_dtype), "cannot come from"),
    "fake-code-points": ("tracin", edit_payload(_bad_codepoints), "cannot come from"),
    "wide-json-strings": ("tracin", _old_style_wide_strings, "width"),
    "declared-shape": ("tracin", _shape_mismatch, "does not hold"),
    "structured-dtype": ("kmeans", _structured_dtype, "not a NumPy dtype"),
    "bad-permutation": ("kmeans", _bad_permutation, "permutation"),
    "unknown-tensor": ("kmeans", _unknown_tensor, "lacks"),
    "dangling-ref": ("tracin", _dangling_ref, "not seen before"),
    "float-labels": ("tracin", edit_payload(_labels_as_floats), "labels_"),
    "estimator-is-a-grouper": ("tracin", _estimator_is_a_grouper, "not a net"),
    "grouper-is-a-property": ("tracin", edit(lambda m: m["root"]["state"]["items"].append(
        ["grouper_", {"kind": "object", "type": "skggda.properties.MeanLoss",
                      "state": {"kind": "dict", "items": []}}])), "grouper_"),
    "reconvert-a-grouper": ("kmeans", _reconvert_a_grouper, "Only a ConvertedModel"),
    "parameter-constraints": ("tracin", set_attribute("grouper", "rm -rf /"),
                              "parameter no estimator could have"),
    "untrusted-function": ("kmeans", set_attribute("verbose", {
        "kind": "function", "name": "os.system"}), "not trusted"),
    "untrusted-import": ("kmeans", set_attribute("verbose", type_node("subprocess.Popen")),
                         "not trusted"),
    "not-a-torch-dtype": ("kmeans", set_attribute("verbose", {"kind": "torch_dtype",
                                                              "name": "load"}),
                          "not a torch dtype"),
    "nan-eigenvalues": ("ekfac", poison("KroneckerBlock"), "NaN or infinite"),
    "nan-kernel": ("trak", poison("KernelState"), "NaN or infinite"),
    "nan-group-store": ("ekfac", edit_payload(_nan_store), "_group_store holds NaN"),
    "store-path-traversal": ("ekfac", _store_handle("../etc/passwd"),
                             "not the name of a skggda group store"),
    "store-handle-to-a-missing-file": ("ekfac", _store_handle(
        "skggda-store-" + "0" * 32 + ".npy"), "is missing"),
    "store-handle-of-three-dimensions": ("ekfac", _store_handle(
        "skggda-store-" + "0" * 32 + ".npy", shape=(1, 1, 1)), "a 2-d shape"),
    "projected-dims-of-other-blocks": ("ekfac-projected", _projected_dims([999, 999]),
                                       "block dimensions do not match"),
    "projected-dims-too-few": ("ekfac-projected", _projected_dims([8]),
                               "block dimensions do not match"),
    "nan-coefficients": ("converted", poison("LogisticRegression"), "NaN or infinite"),
    "converted-from-a-type": ("converted", _converted_from_a_type, "cannot be rebuilt"),
    "bad-random-state": ("kmeans", set_attribute("random_state", {
        "kind": "random_state", "state": tuple_node("MT19937", 1, 2)}), "cannot be rebuilt"),
}
